//! Prints the ModelRollout CRD as YAML: `cargo run -q -p rampart-api --bin crdgen > crds/modelrollout.yaml`.

use std::process::ExitCode;

fn main() -> ExitCode {
    match rampart_api::crd_yaml() {
        Ok(yaml) => {
            print!("{yaml}");
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("crdgen: cannot serialize the CRD: {err}");
            ExitCode::from(1)
        }
    }
}
