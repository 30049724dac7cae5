//! The command line: subcommands and their dispatch. Parsing only; the work happens in the
//! modules each subcommand names. Secrets never come in through argv.

use std::io::{BufReader, Write};
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::batch::{self, Mode};
use crate::error::Error;
use crate::expr::{self, ExprCache};
use crate::frames;

/// hubworker: executes data workflows for a Hub under a zero-trust model.
#[derive(Debug, Parser)]
#[command(name = "hubworker", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

impl Cli {
    /// The log format the command asks for.
    pub fn log_format(&self) -> crate::telemetry::LogFormat {
        match &self.command {
            Command::Serve { log_format, .. } => *log_format,
            _ => crate::telemetry::LogFormat::Text,
        }
    }

    /// Whether the command is a service (`serve`, `hub serve`): its lifecycle is logged at
    /// INFO by default.
    pub fn is_service(&self) -> bool {
        matches!(
            &self.command,
            Command::Serve { .. } | Command::Hub(crate::hub::commands::HubCommand::Serve { .. })
        )
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// The whole security model end to end on loopback: sample data, the reference Hub, a
    /// worker, a dispatched workflow, refused attacks, a cached second run.
    Demo,
    /// Run the worker daemon (the `Worker` gRPC service) with a TOML config. SIGTERM drains,
    /// SIGHUP reloads; speaks systemd's notify protocol when `NOTIFY_SOCKET` is set.
    Serve {
        /// The config file (README: "Configuration").
        #[arg(long)]
        config: PathBuf,
        /// Fleet slot N (systemd `hubworker@N`): worker id `<id>@N`, ports + N.
        #[arg(long)]
        instance: Option<u32>,
        /// Log lines as `text` or `json` (one object per line, for journald and collectors).
        #[arg(long, value_enum, default_value_t = crate::telemetry::LogFormat::Text)]
        log_format: crate::telemetry::LogFormat,
    },
    /// Check a worker config file and its secrets: every problem at once (exit 2), else `ok`.
    ValidateConfig {
        /// The config file (or give it with --config).
        #[arg(
            required_unless_present = "config_flag",
            conflicts_with = "config_flag"
        )]
        config: Option<PathBuf>,
        /// The config file.
        #[arg(long = "config", id = "config_flag")]
        config_flag: Option<PathBuf>,
        /// Check it as fleet slot N (see `serve --instance`).
        #[arg(long)]
        instance: Option<u32>,
    },
    /// Check user input without running it.
    #[command(subcommand)]
    Check(Check),
    /// Evaluate expressions on a data file.
    Eval(EvalArgs),
    /// Run one guarded, read-only SQL query and print the table.
    Query(QueryArgs),
    /// Validate a workflow: every problem at once, else the predicted schemas and, as the
    /// last line, the canonical hash `sha256:<hex>`.
    Validate(ValidateArgs),
    /// Run a workflow locally with the same checks as the worker.
    Run(RunArgs),
    /// Generate keys: token-signing pair, Fernet keys, registration secret (files, mode 0600).
    Keygen {
        /// Directory to write them to (created 0700; existing key files are never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Only a worker host's own transport key (`transport.key`): the registration secret
        /// and the token key set are the Hub's and come from its operator.
        #[arg(long)]
        worker: bool,
    },
    /// The reference Hub.
    #[command(subcommand)]
    Hub(crate::hub::commands::HubCommand),
    /// Create the sample shop database (SQLite) the examples run on.
    SampleDb {
        /// Where to create it (must not exist).
        path: PathBuf,
        /// Orders to generate.
        #[arg(long, default_value_t = 1_000)]
        orders: u32,
    },
    /// Run built-in benchmarks.
    #[command(subcommand)]
    Bench(Bench),
    /// Ask a running worker its `Status` and health (`""` and `hubworker.v1.Worker`) and
    /// print them as a table; exit 1 when it is not serving (draining, or unreachable).
    Status {
        /// The worker's address (`http://127.0.0.1:7200`, or `https://...` with --ca-file).
        #[arg(long)]
        worker: String,
        /// TLS towards the worker.
        #[command(flatten)]
        tls: crate::client::ClientTls,
    },
    /// Print the shell completion script for SHELL (bash, zsh, fish, elvish, powershell).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff): `hubworker man > hubworker.1`.
    Man,
    /// Print generated documentation (the README's reference sections).
    #[command(hide = true)]
    Doc {
        /// What to print: `expr-reference` or `workflow-schema`.
        what: String,
    },
}

#[derive(Debug, Subcommand)]
enum Check {
    /// Check Polars expressions (Python syntax) against the allowlist.
    Expr {
        /// The expression to check (omit with --jsonl).
        #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
        expr: Option<String>,
        /// Read `{"id":..,"expr":..}` lines on stdin, answer one line each on stdout.
        #[arg(long)]
        jsonl: bool,
    },
    /// Check SQL queries against the read-only guard of a dialect.
    Sql {
        /// postgres, mysql (also MariaDB) or sqlite.
        #[arg(long)]
        dialect: crate::sql::Dialect,
        /// The query to check (omit with --jsonl).
        #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
        sql: Option<String>,
        /// Read `{"id":..,"sql":..}` lines on stdin, answer one line each on stdout.
        #[arg(long)]
        jsonl: bool,
    },
    /// Check outbound URLs against the egress rules (schemes, names, addresses), with
    /// simulated DNS answers: no network is used.
    Egress {
        /// The URL to check (omit with --jsonl).
        #[arg(required_unless_present = "jsonl", conflicts_with = "jsonl")]
        url: Option<String>,
        /// A simulated DNS answer for the URL's host, in order (repeat per address).
        #[arg(long = "resolve", value_name = "ADDR", conflicts_with = "jsonl")]
        resolve: Vec<String>,
        /// A host that may be reached over plain http (development; repeat per host).
        #[arg(long = "allow-http", value_name = "HOST")]
        allow_http: Vec<String>,
        /// Read `{"id":..,"url":..,"resolve":[..]}` lines on stdin, answer one line each.
        #[arg(long)]
        jsonl: bool,
    },
}

#[derive(Debug, Args)]
struct EvalArgs {
    /// Input data: .parquet, .csv or .arrow.
    #[arg(long)]
    input: PathBuf,
    /// Read `{"id":..,"expr":..,"mode":..}` lines on stdin; write DIR/<id>.parquet per line.
    #[arg(long, requires = "out_dir", conflicts_with = "expr")]
    jsonl: bool,
    /// Directory for results of --jsonl.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// One expression to evaluate; the result table is printed.
    #[arg(long, required_unless_present = "jsonl")]
    expr: Option<String>,
    /// select: `df.select((EXPR).alias("result"))`; filter: `df.filter(EXPR)`.
    #[arg(long, value_enum, default_value_t = Mode::Select)]
    mode: Mode,
}

#[derive(Debug, Args)]
struct QueryArgs {
    /// Connection URL (`postgres://`, `mysql://`, `sqlite://`). Prefer --url-file for URLs with
    /// a password: argv is visible to other users of the machine.
    #[arg(
        long,
        required_unless_present = "url_file",
        conflicts_with = "url_file"
    )]
    url: Option<String>,
    /// File holding the connection URL; `-` reads it from stdin.
    #[arg(long)]
    url_file: Option<PathBuf>,
    /// The query (must pass the read-only guard of the URL's dialect).
    #[arg(long)]
    sql: String,
    /// Statement timeout in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    timeout_ms: u64,
    /// Most rows accepted.
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: usize,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The workflow JSON file (`-` reads stdin).
    workflow: PathBuf,
    /// Print one JSON object (problems, schemas, hash) instead of text.
    #[arg(long)]
    json: bool,
    /// A run parameter's value, checked as the worker would (`NAME=VALUE`; the value is
    /// read by the declared type: text for `str`, JSON for the rest, e.g. `5`, `true`,
    /// `[1,2]`, `2024-01-31`). Repeat per parameter.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A JSON object of run parameter values (`--param` overrides its entries).
    #[arg(long = "params", value_name = "FILE")]
    params_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The workflow JSON file (`-` reads stdin).
    workflow: PathBuf,
    /// `NAME=URL`, or `NAME=@FILE` to read the URL from a file (use that for URLs with a
    /// password: argv is visible to other users of the machine). Repeat per connection.
    #[arg(long = "connection", value_name = "NAME=URL")]
    connections: Vec<String>,
    /// Write each output as DIR/<name>.parquet instead of printing it.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Wall-clock limit for the whole run, in seconds.
    #[arg(long, default_value_t = 300)]
    timeout_secs: u64,
    /// Most rows accepted from one query.
    #[arg(long, default_value_t = 1_000_000)]
    max_rows: usize,
    /// A run parameter's value (`NAME=VALUE`, read by the declared type: text for `str`, JSON
    /// for the rest). Repeat per parameter.
    #[arg(long = "param", value_name = "NAME=VALUE")]
    params: Vec<String>,
    /// A JSON object of run parameter values (`--param` overrides its entries).
    #[arg(long = "params", value_name = "FILE")]
    params_file: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Bench {
    /// Expression front end (cold, warm, bare parse) and plan execution vs hand-written Polars.
    Expr(crate::bench::ExprBenchArgs),
    /// Loading a PostgreSQL query into a DataFrame vs draining its binary COPY.
    Load(crate::bench::LoadBenchArgs),
    /// A 10M-row workflow through the engine vs the same plan hand-written in Rust Polars.
    Workflow(crate::bench::workflow::WorkflowBenchArgs),
    /// End-to-end dispatch: Hub token + gRPC Execute + results, latency and runs/s.
    Dispatch(crate::bench::dispatch::DispatchBenchArgs),
    /// The reference Hub dispatching over 1, 2, 3... worker processes: runs/s, p50/p99 and
    /// the cache hit rate with affinity, and with random dispatch at the largest count.
    Fleet(crate::bench::fleet::FleetBenchArgs),
}

/// Runs the parsed command; returns the process exit code on success.
pub fn run(cli: Cli) -> Result<u8, Error> {
    match cli.command {
        Command::Demo => crate::demo::run(),
        Command::Serve {
            config, instance, ..
        } => crate::worker::daemon::serve(&config, instance),
        Command::ValidateConfig {
            config,
            config_flag,
            instance,
        } => validate_config(config.or(config_flag), instance),
        Command::Check(Check::Expr { expr, jsonl }) => check_expr(expr, jsonl),
        Command::Check(Check::Sql {
            dialect,
            sql,
            jsonl,
        }) => check_sql(dialect, sql, jsonl),
        Command::Check(Check::Egress {
            url,
            resolve,
            allow_http,
            jsonl,
        }) => check_egress(url, &resolve, allow_http, jsonl),
        Command::Eval(args) => eval(args),
        Command::Query(args) => query(args),
        Command::Validate(args) => crate::workflow_cli::validate(
            &args.workflow,
            args.json,
            &args.params,
            args.params_file.as_deref(),
        ),
        Command::Run(args) => crate::workflow_cli::run(&crate::workflow_cli::RunOptions {
            workflow: args.workflow,
            connections: args.connections,
            output: args.output,
            timeout: std::time::Duration::from_secs(args.timeout_secs),
            max_rows: args.max_rows,
            params: args.params,
            params_file: args.params_file,
        }),
        Command::Keygen { out, worker } => {
            let written = if worker {
                crate::keys::keygen_worker(&out)
            } else {
                crate::keys::keygen(&out)
            }
            .map_err(Error::Usage)?;
            for path in written {
                println!("wrote {}", path.display());
            }
            Ok(0)
        }
        Command::Hub(cmd) => crate::hub::commands::run(cmd),
        Command::Status { worker, tls } => crate::client::status(&worker, &tls),
        Command::Completions { shell } => {
            crate::manual::completions(shell, Cli::command(), &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::Man => {
            crate::manual::man_page(Cli::command(), &mut std::io::stdout().lock())?;
            Ok(0)
        }
        Command::SampleDb { path, orders } => {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let size = crate::sample::SampleSize {
                orders,
                ..Default::default()
            };
            // The one way this fails is the path (it exists, or its folder does not).
            rt.block_on(crate::sample::create(&path, size))
                .map_err(|e| Error::Usage(e.to_string()))?;
            println!("created {}", path.display());
            Ok(0)
        }
        Command::Bench(Bench::Load(args)) => {
            let url = match &args.url_file {
                Some(path) => crate::secret::read_secret(path)?,
                None => {
                    crate::secret::Secret::new("postgres://postgres@127.0.0.1:5432/test".to_owned())
                }
            };
            println!("{}", crate::bench::run_load_bench(&args, url)?);
            Ok(0)
        }
        Command::Bench(Bench::Dispatch(args)) => {
            println!("{}", crate::bench::dispatch::run(&args)?);
            Ok(0)
        }
        Command::Bench(Bench::Fleet(args)) => {
            println!("{}", crate::bench::fleet::run(&args)?);
            Ok(0)
        }
        Command::Bench(Bench::Workflow(args)) => {
            println!("{}", crate::bench::workflow::run(&args)?);
            Ok(0)
        }
        Command::Bench(Bench::Expr(args)) => {
            let report = crate::bench::run_expr_bench(&args)?;
            println!("{report}");
            Ok(0)
        }
        Command::Doc { what } => match what.as_str() {
            "expr-reference" => {
                print!("{}", expr::reference_markdown());
                Ok(0)
            }
            "workflow-schema" => {
                print!("{}", crate::workflow::model::json_schema());
                Ok(0)
            }
            other => Err(Error::Usage(format!("unknown doc '{other}'"))),
        },
    }
}

fn check_expr(src: Option<String>, jsonl: bool) -> Result<u8, Error> {
    let cache = ExprCache::default();
    if jsonl {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        batch::check_jsonl(BufReader::new(stdin), stdout, &cache)?;
        return Ok(0);
    }
    let src = src.unwrap_or_default();
    match expr::check(&src) {
        Ok(_) => {
            println!("ok");
            Ok(0)
        }
        Err(e) => {
            let mut err = std::io::stderr().lock();
            writeln!(err, "rejected: {} [{}]", e.message, e.code())?;
            writeln!(err, "  {}", src.replace('\n', " "))?;
            let start = src
                .get(..e.span.0 as usize)
                .map_or(0, |s| s.chars().count());
            let width = src
                .get(e.span.0 as usize..e.span.1 as usize)
                .map_or(1, |s| s.chars().count().max(1));
            writeln!(err, "  {}{}", " ".repeat(start), "^".repeat(width))?;
            Ok(1)
        }
    }
}

fn check_sql(dialect: crate::sql::Dialect, sql: Option<String>, jsonl: bool) -> Result<u8, Error> {
    if jsonl {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        batch::check_sql_jsonl(BufReader::new(stdin), stdout, dialect)?;
        return Ok(0);
    }
    match crate::sql::guard(&sql.unwrap_or_default(), dialect) {
        Ok(q) => {
            println!("ok: {}", q.sql());
            Ok(0)
        }
        Err(e) => {
            eprintln!("rejected: {} [{}]", e.message, e.code.as_str());
            Ok(1)
        }
    }
}

fn check_egress(
    url: Option<String>,
    resolve: &[String],
    allow_http: Vec<String>,
    jsonl: bool,
) -> Result<u8, Error> {
    let rules = crate::egress::Rules {
        http_hosts: allow_http,
    };
    if jsonl {
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        batch::check_egress_jsonl(BufReader::new(stdin), stdout, &rules)?;
        return Ok(0);
    }
    let answers = (!resolve.is_empty()).then_some(resolve);
    match batch::vet_egress(&url.unwrap_or_default(), answers, &rules) {
        Ok(v) => {
            println!("ok: connect {}", v.connect);
            Ok(0)
        }
        Err(r) => {
            eprintln!("refused: {} [{}]", r.message, r.code);
            Ok(1)
        }
    }
}

fn query(args: QueryArgs) -> Result<u8, Error> {
    use crate::connector::{QueryOptions, ResultLimits, Target};
    let url = match (args.url, &args.url_file) {
        (Some(url), _) => crate::secret::Secret::new(url),
        (None, Some(path)) => crate::secret::read_secret(path)?,
        (None, None) => return Err(Error::Usage("--url or --url-file is required".into())),
    };
    let target = Target::from_url(url)?;
    let checked = crate::sql::guard(&args.sql, target.dialect).map_err(|e| {
        Error::Usage(format!(
            "query rejected: {} [{}]",
            e.message,
            e.code.as_str()
        ))
    })?;
    let options = QueryOptions {
        limits: ResultLimits {
            max_rows: args.max_rows,
            ..ResultLimits::default()
        },
        timeout: std::time::Duration::from_millis(args.timeout_ms),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let df = rt.block_on(crate::connector::query(&target, &checked, &[], options))?;
    println!("{df}");
    Ok(0)
}

fn eval(args: EvalArgs) -> Result<u8, Error> {
    let df = frames::read(&args.input).map_err(|source| Error::Frame {
        path: args.input.clone(),
        source,
    })?;
    let cache = ExprCache::default();
    if args.jsonl {
        let dir = args
            .out_dir
            .ok_or_else(|| Error::Usage("--jsonl needs --out-dir".into()))?;
        std::fs::create_dir_all(&dir)?;
        let stdin = std::io::stdin().lock();
        let stdout = std::io::stdout().lock();
        batch::eval_jsonl(&df, &dir, BufReader::new(stdin), stdout, &cache)?;
        return Ok(0);
    }
    let src = args.expr.unwrap_or_default();
    let checked = expr::check(&src)?;
    let failed = |m: String| Error::Polars(polars::prelude::PolarsError::ComputeError(m.into()));
    let result = batch::apply_guarded(&df, expr::compile(&checked), args.mode).map_err(failed)?;
    println!("{}", batch::render_guarded(&result).map_err(failed)?);
    Ok(0)
}

fn validate_config(path: Option<PathBuf>, instance: Option<u32>) -> Result<u8, Error> {
    let path = path.ok_or_else(|| Error::Usage("a config file is required".into()))?;
    let report = crate::config::validate::report(&path, instance, &crate::keys::ProcessEnv);
    let mut err = std::io::stderr().lock();
    for w in &report.warnings {
        writeln!(err, "warning: {w}")?;
    }
    if !report.problems.is_empty() {
        return Err(Error::Config(report.problems_text(&path)));
    }
    println!("ok");
    Ok(0)
}
