//! A discrete-event simulator of tower-lb's balancing algorithms.
//!
//! ```text
//! cargo run --release --example simulate -- examples/fleets/slow-node.toml [--out docs/sim-slow-node]
//!     [--requests N] [--algo RR,LC,…] [--font FILE.ttf]
//! ```
//!
//! Reads a fleet file (the load: a Poisson arrival rate; the backends: latency distribution,
//! capacity, error rate, changes over time; see `examples/fleets/`), runs the library's real
//! balancer with each algorithm against it in virtual time (see `run.rs`), prints p50, p99,
//! p99.9, the error share and each backend's share, and draws every algorithm's latency
//! distribution on one chart, `{out}.svg` and `{out}.png` (by default
//! `target/sim-{fleet name}`).

mod chart;
mod fleet;
mod run;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use fleet::Fleet;
use run::{Outcome, simulate};

/// The command line.
#[derive(Debug)]
struct Args {
    fleet: PathBuf,
    out: Option<PathBuf>,
    requests: Option<usize>,
    algos: Option<String>,
    font: PathBuf,
}

const USAGE: &str =
    "usage: simulate FLEET.toml [--out PREFIX] [--requests N] [--algo A,B,…] [--font FILE.ttf]";

fn parse_args(mut argv: impl Iterator<Item = String>) -> Result<Args, String> {
    let mut fleet = None;
    let mut args = Args {
        fleet: PathBuf::new(),
        out: None,
        requests: None,
        algos: None,
        font: PathBuf::from(chart::DEFAULT_FONT),
    };
    while let Some(arg) = argv.next() {
        let mut value = |flag: &str| argv.next().ok_or_else(|| format!("{flag} needs a value"));
        match arg.as_str() {
            "--out" => args.out = Some(value("--out")?.into()),
            "--font" => args.font = value("--font")?.into(),
            "--algo" => args.algos = Some(value("--algo")?),
            "--requests" => {
                let n = value("--requests")?;
                args.requests =
                    Some(n.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                        format!("--requests {n:?}: expected a count of at least 1")
                    })?);
            }
            "-h" | "--help" => return Err(USAGE.to_owned()),
            flag if flag.starts_with('-') => return Err(format!("unknown flag {flag}")),
            path if fleet.is_none() => fleet = Some(PathBuf::from(path)),
            extra => return Err(format!("unexpected argument {extra:?}")),
        }
    }
    args.fleet = fleet.ok_or("no fleet file given")?;
    Ok(args)
}

fn main() -> ExitCode {
    let args = match parse_args(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("simulate: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("simulate: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(args: &Args) -> Result<(), String> {
    let mut fleet = Fleet::load(&args.fleet)?;
    if let Some(algos) = &args.algos {
        fleet.algorithms = algos.split(',').map(str::to_owned).collect();
    }
    let algos = fleet.algos()?;
    chart::load_font(&args.font)?;
    let requests = args.requests.unwrap_or(fleet.requests);
    let name = args
        .fleet
        .file_stem()
        .map_or_else(|| "fleet".to_owned(), |s| s.to_string_lossy().into_owned());
    println!(
        "fleet {name}: {} backends, {requests} requests per algorithm at {}/s (Poisson), {} clients",
        fleet.backends.len(),
        fleet.rate,
        fleet.clients
    );

    // One thread (and paused runtime) per algorithm, as many at once as there are cores.
    let started = Instant::now();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut outcomes: Vec<Outcome> = Vec::new();
    for batch in algos.chunks(threads) {
        std::thread::scope(|scope| {
            let runs: Vec<_> = batch
                .iter()
                .map(|&algo| {
                    let fleet = &fleet;
                    scope.spawn(move || simulate(fleet, algo, requests))
                })
                .collect();
            outcomes.extend(
                runs.into_iter()
                    .map(|r| r.join().expect("a run does not panic")),
            );
        });
    }
    let took = started.elapsed();

    print_table(&fleet, &outcomes);
    println!(
        "simulated {} requests in {:.1} s ({} algorithms, {threads} threads)",
        requests * outcomes.len(),
        took.as_secs_f64(),
        outcomes.len()
    );
    let prefix = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("target/sim-{name}")));
    if let Some(dir) = prefix.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    }
    let title = format!(
        "{name}: latency by algorithm ({requests} requests at {}/s)",
        fleet.rate
    );
    let [svg, png] = chart::draw(&title, &outcomes, &prefix)?;
    println!("chart: {} {}", svg.display(), png.display());
    Ok(())
}

fn print_table(fleet: &Fleet, outcomes: &[Outcome]) {
    let names: Vec<&str> = fleet.backends.iter().map(|b| b.name.as_str()).collect();
    print!(
        "{:<7} {:>9} {:>9} {:>9} {:>8}  share:",
        "algo", "p50 ms", "p99 ms", "p99.9 ms", "errors"
    );
    for name in &names {
        print!(" {name:>8}");
    }
    println!();
    for o in outcomes {
        let total = o.latencies_ms.len().max(1) as f64;
        print!(
            "{:<7} {:>9.2} {:>9.2} {:>9.2} {:>7.2}%        ",
            o.algo.to_string(),
            o.quantile(0.5),
            o.quantile(0.99),
            o.quantile(0.999),
            100.0 * o.errors as f64 / total
        );
        for &n in &o.per_backend {
            print!(" {:>7.1}%", 100.0 * n as f64 / total);
        }
        println!();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(argv: &[&str]) -> Result<Args, String> {
        parse_args(argv.iter().map(|s| s.to_string()))
    }

    #[test]
    fn reads_its_flags_and_refuses_bad_ones() {
        let a = parse(&[
            "f.toml",
            "--out",
            "docs/x",
            "--requests",
            "10",
            "--algo",
            "RR,LC",
        ])
        .unwrap();
        assert_eq!(a.fleet, PathBuf::from("f.toml"));
        assert_eq!(a.out, Some(PathBuf::from("docs/x")));
        assert_eq!(a.requests, Some(10));
        assert_eq!(a.algos.as_deref(), Some("RR,LC"));
        assert_eq!(a.font, PathBuf::from(chart::DEFAULT_FONT));
        for bad in [
            &[][..],
            &["f", "--requests", "0"],
            &["f", "--speed"],
            &["f", "g"],
            &["f", "--out"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shipped_fleets_parse() {
        for fleet in ["uneven", "slow-node", "failing-node", "validate"] {
            let path = PathBuf::from(format!(
                "{}/examples/fleets/{fleet}.toml",
                env!("CARGO_MANIFEST_DIR")
            ));
            Fleet::load(&path).unwrap();
        }
    }

    #[test]
    fn draws_a_chart_of_a_short_run() {
        let fleet = Fleet::parse(
            "rate = 500\nalgorithms = ['RR', 'LC']\n[[backend]]\nname = 'a'\nlatency = { dist = 'exponential', mean_ms = 5 }\n[[backend]]\nname = 'b'\nlatency = { dist = 'fixed', ms = 20 }",
        )
        .unwrap();
        chart::load_font(std::path::Path::new(chart::DEFAULT_FONT))
            .expect("the chart needs DejaVu Sans: apt install fonts-dejavu-core");
        let outcomes: Vec<Outcome> = fleet
            .algos()
            .unwrap()
            .into_iter()
            .map(|a| simulate(&fleet, a, 2_000))
            .collect();
        let dir = std::env::temp_dir().join(format!("simulate-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let [svg, png] = chart::draw("test", &outcomes, &dir.join("chart")).unwrap();
        let svg_text = std::fs::read_to_string(&svg).unwrap();
        assert!(
            svg_text.contains("<svg") && svg_text.contains("RR (p99"),
            "{svg_text:.200}"
        );
        let png_bytes = std::fs::read(&png).unwrap();
        assert!(png_bytes.starts_with(b"\x89PNG"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
