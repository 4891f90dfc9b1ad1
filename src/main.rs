//! The `storefront` command: `serve` (the default), `migrate`, `create-user`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use storefront::auth::{users, Username};
use storefront::config::{Config, LogFormat};
use storefront::{db, telemetry, Application};

// The benchmark's counting allocator, in place of the one in src/memory.rs.
#[cfg(feature = "count-allocations")]
mod alloc_count;

#[derive(Parser)]
#[command(version, about = "A shop whose sessions and carts live in Redis")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: Config,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the shop (the default).
    Serve(Box<Config>),
    /// Create or update the database (SQLite or Postgres) (and the demo account), then exit.
    Migrate {
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://data/storefront.db"
        )]
        database_url: String,
        /// Create the demo account (`demo` / `demo-pass-123`) if it does not exist,
        /// as `serve` does: set `DEMO_USER=false` for a real deployment.
        #[arg(long, env = "DEMO_USER", default_value_t = true, action = clap::ArgAction::Set)]
        demo_user: bool,
    },
    /// Add a user account.
    CreateUser {
        username: String,
        /// Read from the STOREFRONT_PASSWORD variable so it stays out of shell history.
        #[arg(long, env = "STOREFRONT_PASSWORD", hide_env_values = true)]
        password: String,
        #[arg(
            long,
            env = "DATABASE_URL",
            default_value = "sqlite://data/storefront.db"
        )]
        database_url: String,
    },
}

fn main() -> anyhow::Result<()> {
    // Parsed before the runtime exists, because it sizes the runtime: a bad
    // setting is clap's usage error (exit 2), never a panic inside tokio.
    let cli = Cli::parse();
    let threads = match &cli.command {
        Some(Command::Serve(config)) => config.worker_threads,
        _ => cli.serve.worker_threads,
    };
    // Always explicit, so tokio never reads `TOKIO_WORKER_THREADS` itself: it
    // panics on a bad value, where clap has already given a usage error.
    let threads = threads.map_or_else(
        || std::thread::available_parallelism().map_or(1, usize::from),
        usize::from,
    );
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .enable_all()
        .build()?
        .block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        None => serve(cli.serve).await,
        Some(Command::Serve(config)) => serve(*config).await,
        Some(Command::Migrate {
            database_url,
            demo_user,
        }) => {
            telemetry::init(LogFormat::Pretty);
            let pool = db::connect(&database_url).await?;
            db::migrate(&pool).await?;
            if demo_user {
                users::ensure_demo_user(&pool).await?;
            }
            tracing::info!(%database_url, "database is up to date");
            Ok(())
        }
        Some(Command::CreateUser {
            username,
            password,
            database_url,
        }) => {
            telemetry::init(LogFormat::Pretty);
            let username = Username::parse(&username).map_err(anyhow::Error::msg)?;
            let password =
                storefront::auth::Password::parse(password).map_err(anyhow::Error::msg)?;
            let pool = db::connect(&database_url).await?;
            db::migrate(&pool).await?;
            let user = users::create(
                &pool,
                &storefront::auth::queue::HashingLine::new(),
                &username,
                password.into_inner(),
                None,
            )
            .await
            .context("creating the user")?;
            // As a registration does: the new account starts a new credential epoch,
            // so no session made for an earlier holder of its id can open it.
            if let Some(url) = &cli.serve.redis_url {
                let redis = storefront::redis::Redis::connect(url, cli.serve.redis_timeout).await?;
                storefront::session::SessionIndex::redis(redis, cli.serve.longest_login())
                    .bump_epoch(user.id)
                    .await
                    .context("starting the account's credential epoch in Redis")?;
            }
            println!("created user {} (id {})", user.username, user.id);
            Ok(())
        }
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    telemetry::init(config.log_format);
    #[cfg(feature = "count-allocations")]
    alloc_count::report_on_sigusr1()?;
    let app = Application::build(config).await?;
    let stopped = app.run_until_stopped().await;
    #[cfg(feature = "count-allocations")]
    alloc_count::report("stopped");
    stopped
}
