//! The `insights-connector` binary: `serve` (the default), `export` and `keys`. Parses the
//! command line and hands over to [`insights_connector::startup`] and the library's modules.

use std::path::PathBuf;

/// mimalloc instead of glibc malloc: with a large heap of small objects (unification holds
/// millions of strings) glibc's `_int_malloc`/`malloc_consolidate` took ~30 % of the time
/// (BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Parser, Subcommand};
use insights_connector::configuration::{ServeArgs, Settings};
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
    /// Create a key for a tenant and print it (only its hash is stored).
    Create {
        #[arg(long)]
        tenant: String,
        #[arg(long, env = "CONNECTOR_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
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
        Some(Command::Keys {
            command: KeysCommand::Create { tenant, data_dir },
        }) => {
            let tenant = tenant.trim();
            if tenant.is_empty() {
                anyhow::bail!("--tenant must not be empty");
            }
            let store = store::Store::open(&data_dir).await?;
            let key = api::auth::generate_key();
            store
                .insert_api_key(tenant, &api::auth::hash_key(&key))
                .await?;
            store.close().await;
            println!("{key}");
            Ok(())
        }
    }
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
