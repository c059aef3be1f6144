//! `watchgrid-test-pg start DIR` / `stop DIR`: the test suite's throwaway PostgreSQL cluster.
//!
//! `start` initialises a cluster in DIR, starts it and prints its admin URL on stdout;
//! `stop` stops it. `scripts/test.sh` wraps the suite in the two.

use std::path::PathBuf;
use std::process::ExitCode;

use watchgrid_testkit::PgCluster;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.as_slice() {
        [command, dir] if command == "start" => {
            let dir = PathBuf::from(dir);
            PgCluster::init(&dir).and_then(|cluster| {
                cluster.start()?;
                println!("{}", cluster.url("postgres"));
                Ok(())
            })
        }
        [command, dir] if command == "stop" => {
            PgCluster::open(&PathBuf::from(dir)).and_then(|cluster| cluster.stop())
        }
        _ => {
            eprintln!("usage: watchgrid-test-pg start|stop DIR");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("watchgrid-test-pg: {err:#}");
            ExitCode::FAILURE
        }
    }
}
