//! The `insights-connector` binary: `serve` (the default), `export` and `keys`. Parses the
//! command line and hands over to [`insights_connector::startup`] and the library's modules.

use std::path::PathBuf;

/// mimalloc instead of glibc malloc: with a large heap of small objects (unification holds
/// millions of strings) glibc's `_int_malloc`/`malloc_consolidate` took ~30 % of the time
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use insights_connector::configuration::{ServeArgs, Settings, StoreArgs};
use insights_connector::startup::Application;
use insights_connector::{api, spec, store, telemetry};

/// Backend of the Audience Insights Power Automate connector.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default).
    Serve(Box<ServeArgs>),
    /// Write openapi/ and connector-definition/ from the code.
    Export {
        /// Public URL written into the connector definition's host/basePath/schemes.
        #[arg(long, env = "CONNECTOR_PUBLIC_URL", default_value = spec::DEFAULT_PUBLIC_URL)]
        public_url: String,
        /// Project root to write into.
        #[arg(long, default_value = ".")]
        out_dir: PathBuf,
        /// Do not write; exit non-zero if the committed files differ from what the code produces.
        #[arg(long)]
        check: bool,
    },
    /// Manage API keys.
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key for a tenant and print it (only its hash and prefix are stored).
    Create {
        #[arg(long)]
        tenant: String,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// List a tenant's keys: `KEY_ID PREFIX CREATED LAST_USED EXPIRES` per line (`-`: none).
    List {
        #[arg(long)]
        tenant: String,
        /// Print a JSON array instead.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Revoke a key by its id (every replica refuses it within seconds).
    Revoke {
        key_id: String,
        #[command(flatten)]
        store: StoreArgs,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(args)) => serve(*args).await,
        Some(Command::Export {
            public_url,
            out_dir,
            check,
        }) => {
            let changed = spec::export(&out_dir, &public_url, check)?;
            if check && !changed.is_empty() {
                eprintln!(
                    "out of date (run `insights-connector export`): {}",
                    changed.join(", ")
                );
                std::process::exit(1);
            }
            for f in &changed {
                println!("wrote {f}");
            }
            Ok(())
        }
        Some(Command::Keys { command }) => keys(command).await,
    }
}

async fn keys(command: KeysCommand) -> anyhow::Result<()> {
    match command {
        KeysCommand::Create { tenant, store } => {
            let tenant = tenant.trim();
            if tenant.is_empty() {
                anyhow::bail!("--tenant must not be empty");
            }
            let store = store::Store::connect(&store.database()?).await?;
            let key = api::auth::generate_key();
            let id = api::auth::store_key(&store, tenant, &key).await;
            store.close().await;
            let id = id?.ok_or_else(|| anyhow::anyhow!("the generated key already exists"))?;
            eprintln!("created key {id} for tenant '{tenant}' (shown only now):");
            println!("{key}");
            Ok(())
        }
        KeysCommand::List {
            tenant,
            json,
            store,
        } => {
            let store = store::Store::connect(&store.database()?).await?;
            let keys = store.list_api_keys(tenant.trim()).await;
            store.close().await;
            let keys = keys?;
            if json {
                let rows: Vec<_> = keys
                    .iter()
                    .map(|k| {
                        serde_json::json!({
                            "id": k.id,
                            "tenant": k.tenant,
                            "prefix": k.prefix,
                            "createdAt": time(k.created_at),
                            "lastUsedAt": k.last_used_at.map(time),
                            "expiresAt": k.expires_at.map(time),
                        })
                    })
                    .collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for k in &keys {
                    println!(
                        "{} {} {} {} {}",
                        k.id,
                        k.prefix.as_deref().filter(|p| !p.is_empty()).unwrap_or("-"),
                        time(k.created_at),
                        k.last_used_at.map_or_else(|| "-".into(), time),
                        k.expires_at.map_or_else(|| "-".into(), time),
                    );
                }
            }
            Ok(())
        }
        KeysCommand::Revoke { key_id, store } => {
            let store = store::Store::connect(&store.database()?).await?;
            let revoked = store.revoke_api_key(key_id.trim()).await;
            store.close().await;
            if !revoked? {
                anyhow::bail!("no API key has the id '{}'", key_id.trim());
            }
            eprintln!(
                "revoked key {}; every server refuses it within {} s",
                key_id.trim(),
                api::auth::KEY_CACHE_TTL.as_secs() + 2
            );
            Ok(())
        }
    }
}

/// Timestamps as RFC 3339 UTC, to the second.
fn time(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    telemetry::init_tracing("info,sqlx=warn");
    let settings = Settings::from_args(&args)?;
    let app = Application::build(settings).await?;
    if let Some(key) = app.generated_key() {
        eprintln!(
            "\nNo API key existed, so one was created for tenant 'default' (shown only now):\n\n    X-API-Key: {key}\n"
        );
    }
    tracing::info!(url = app.public_url(), "serving");
    app.run_until_stopped().await?;
    Ok(())
}
