//! Builds the application from [`Settings`]: database, keys, HTTP server and background workers.

use std::net::TcpListener;

use actix_web::dev::Server;
use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpServer};
use tracing_actix_web::TracingLogger;
use utoipa_actix_web::AppExt;
use utoipa_swagger_ui::{Config, SwaggerUi};

use crate::api::{self, auth, AppState, RouteTable};
use crate::configuration::Settings;
use crate::engine::Engine;
use crate::spec;
use crate::store::Store;
use crate::telemetry::Metrics;
use crate::webhooks::dispatcher::{self, DispatcherConfig, DispatcherHandle};
use crate::webhooks::ssrf::{CallbackPolicy, HostPattern};

pub struct Application {
    port: u16,
    public_url: String,
    server: Server,
    store: Store,
    engine: Engine,
    generated_key: Option<String>,
    dispatcher: Option<DispatcherHandle>,
    stop_signals: StopSignals,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let callback_policy = CallbackPolicy {
            allow_private: settings.allow_private_callbacks,
            allowed_hosts: settings
                .callback_hosts
                .iter()
                .map(|h| h.parse::<HostPattern>())
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("--callback-hosts: {e}"))?,
        };
        let store = Store::connect(&settings.database).await?;
        let generated_key = auth::bootstrap_keys(&store, &settings.bootstrap_keys).await?;

        let stop_signals = StopSignals::register()?;
        let listener = TcpListener::bind(settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let public_url = settings
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}:{port}", settings.bind.ip()));

        let engine = Engine::new(
            store.clone(),
            settings.data_dir.clone(),
            settings.read_cache_bytes,
        );
        engine
            .start_job_workers(settings.job_workers, settings.job_heartbeat_timeout)
            .await?;
        engine.start_scheduler(std::time::Duration::from_secs(1));
        let metrics = Metrics::new();

        let openapi = spec::openapi();
        let documents = spec::documents(&openapi, &public_url)?;
        let state = web::Data::new(AppState {
            engine: engine.clone(),
            public_url: public_url.clone(),
            keys: auth::KeyRing::new(store.clone()),
            throttle: settings
                .rate_limit
                .map(|limit| auth::Throttle::new(limit, store.clone())),
            metrics: metrics.clone(),
            routes: RouteTable::from_openapi(&openapi),
            documents,
            callback_policy: callback_policy.clone(),
        });

        let max_body = settings.max_body_bytes;
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .configure(|cfg| api::extractor_config(cfg, max_body))
                .configure(api::operational::configure)
                .service(
                    SwaggerUi::new("/docs/{_:.*}")
                        .config(Config::from("/openapi.json").validator_url("none")),
                )
                .default_service(web::to(api::fallback))
                .wrap(from_fn(api::middleware::refuse_duplicate_members))
                .wrap(from_fn(api::middleware::authenticate))
                .wrap(from_fn(api::middleware::refuse_encoded_bodies))
                .wrap(from_fn(api::middleware::catch_panic))
                .wrap(from_fn(api::middleware::record_metrics))
                .wrap(TracingLogger::<crate::telemetry::RequestSpan>::new())
                .into_utoipa_app()
                .configure(api::configure)
                .into_app()
        })
        .listen(listener)?
        // Signals are handled in `run_until_stopped` (works under any tokio runtime).
        .disable_signals()
        .shutdown_timeout(20);
        if let Some(workers) = settings.http_workers {
            server = server.workers(workers);
        }
        let server = server.run();

        // Webhook dispatcher: delivers the outbox (stopped in `run_until_stopped`).
        let dispatcher = settings.deliver_webhooks.then(|| {
            dispatcher::spawn(
                store.clone(),
                engine.outbox_signal(),
                DispatcherConfig {
                    policy: callback_policy.clone(),
                    timeout: settings.delivery_timeout,
                    concurrency: settings.delivery_concurrency,
                    retry: settings.retry.clone(),
                    poll_interval: settings.dispatcher_poll_interval,
                },
                Some(metrics.deliveries.clone()),
            )
        });

        // Deliveries committed by other replicas wake this one's dispatcher.
        engine.spawn_background({
            let store = store.clone();
            let signal = engine.outbox_signal();
            let stop = engine.shutdown_token();
            async move { store.relay_outbox_hints(signal, stop).await }
        });

        // Outbox retention (ends with the engine's shutdown).
        engine.spawn_background(crate::webhooks::retention::run(
            store.clone(),
            settings.retention,
            engine.shutdown_token(),
        ));

        Ok(Self {
            port,
            public_url,
            server,
            store,
            engine,
            generated_key,
            stop_signals,
            dispatcher,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The key generated on first start when no key existed (print it once).
    pub fn generated_key(&self) -> Option<&str> {
        self.generated_key.as_deref()
    }

    /// The domain engine (tests use it to inspect state directly).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    pub fn handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serves until SIGINT/SIGTERM (or a stop through the handle): stops accepting, lets in-flight
    /// requests finish, then closes the database.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let handle = self.server.handle();
        let stop_signals = self.stop_signals;
        let signals = tokio::spawn(async move {
            stop_signals.wait().await;
            tracing::info!("stop signal received: finishing in-flight requests");
            handle.stop(true).await;
        });
        let result = self.server.await;
        signals.abort();
        self.engine.shut_down();
        // The dispatcher lets attempts in flight finish (or cut at their deadline) before the
        // database closes; so do the background loops, within a grace period.
        if let Some(dispatcher) = self.dispatcher {
            dispatcher.shutdown().await;
        }
        self.engine
            .background_stopped(std::time::Duration::from_secs(5))
            .await;
        self.store.close().await;
        result
    }
}

/// SIGINT (Ctrl-C) and SIGTERM, registered when the application is built so that a signal that
/// arrives as soon as the port answers is not lost.
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn register() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    async fn wait(mut self) {
        #[cfg(unix)]
        tokio::select! {
            _ = self.interrupt.recv() => {}
            _ = self.terminate.recv() => {}
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}
