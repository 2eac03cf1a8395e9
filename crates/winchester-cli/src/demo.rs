//! `winchester demo` and `winchester generate`: the simulated OpenStack cloud
//! of the winchester-demo crate, run through the engine or printed.

use crate::common::ConfigArgs;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

/// What to simulate.
#[derive(Debug, Clone, clap::Args)]
pub struct SimArgs {
    /// Instances to simulate.
    #[arg(long, default_value_t = 300)]
    pub instances: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 3)]
    pub days: u32,
    /// Tenants.
    #[arg(long, default_value_t = 25)]
    pub tenants: usize,
    /// Random seed (same seed, same notifications).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl SimArgs {
    /// The generator these flags describe.
    pub fn generator(&self) -> winchester_demo::GeneratorOptions {
        winchester_demo::GeneratorOptions {
            instances: self.instances,
            days: self.days,
            tenants: self.tenants,
            start: winchester_demo::default_start(self.days),
            seed: self.seed,
        }
    }
}

/// `winchester demo` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    #[command(flatten)]
    /// What to simulate.
    pub sim: SimArgs,
    /// Use this winchester.yaml instead of the built-in examples.
    #[arg(long = "demo-config")]
    pub demo_config: Option<PathBuf>,
    /// Print the summary as one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Commit each distinct timestamp alone with a worker run after each
    /// (the slow reference replay) instead of in exact batches.
    #[arg(long)]
    pub per_moment: bool,
}

/// `winchester generate` flags.
#[derive(Debug, Clone, clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    /// What to simulate.
    pub sim: SimArgs,
    /// Print exactly N notifications (more instances than --instances when
    /// it takes more to make N; stderr says how many).
    #[arg(long)]
    pub count: Option<usize>,
}

/// `winchester demo`: runs the demo and prints its summary.
pub async fn demo(config: &ConfigArgs, args: DemoArgs) -> anyhow::Result<ExitCode> {
    use std::io::IsTerminal;
    let demo = winchester_demo::DemoOptions {
        generator: args.sim.generator(),
        database_url: config.database_url.clone(),
        config: args.demo_config,
        batch_size: 1000,
        progress: !args.json && std::io::stderr().is_terminal(),
        per_moment: args.per_moment,
    };
    let summary = winchester_demo::run(&demo).await?;
    if args.json {
        println!("{}", summary.to_json());
    } else {
        print!("{}", summary.table());
    }
    Ok(ExitCode::SUCCESS)
}

/// `winchester generate`: prints the notifications as JSON lines.
pub fn generate(args: &GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut gen = args.sim.generator();
    let mut notifications = winchester_demo::generate(&gen);
    // `--count N`: exactly N, with as many more instances as it takes.
    if let Some(n) = args.count {
        while notifications.len() < n && !notifications.is_empty() {
            let per_instance = notifications.len() as f64 / gen.instances.max(1) as f64;
            gen.instances = ((n as f64 / per_instance).ceil() as usize).max(gen.instances + 1);
            notifications = winchester_demo::generate(&gen);
        }
        if gen.instances != args.sim.instances {
            eprintln!("generate: {} instances to reach {n} notifications", gen.instances);
        }
    }
    for n in notifications.iter().take(args.count.unwrap_or(usize::MAX)) {
        writeln!(out, "{n}")?;
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}
