//! `rampart validate`: the candidate's tensor contract against the baseline's (a file, or the contract the registry
//! holds for `production`), plus residual-shape checks at each batch size; text, JSON or JUnit XML for CI.

use std::path::PathBuf;
use std::process::ExitCode;

use rampart_checks::contract::{
    ContractOptions, ContractReport, LoadedModel, ModelContract, compare_models, load_model,
};

use crate::args::{GlobalArgs, ValidateArgs, ValidateFormat};
use crate::database::Database;
use crate::error::CliError;
use crate::junit;

/// Validates against the baseline file, or the registry's production contract with `--baseline-from-registry`.
pub async fn run(args: &ValidateArgs, global: &GlobalArgs) -> Result<ExitCode, CliError> {
    match &args.baseline_from_registry {
        Some(model) => run_with_registry(args, global, model).await,
        None => run_local(args),
    }
}

fn run_local(args: &ValidateArgs) -> Result<ExitCode, CliError> {
    let candidate = load(args, &args.candidate, "candidate")?;
    let baseline = match &args.baseline {
        Some(path) => Some(load(args, path, "baseline")?),
        None => None,
    };
    report(args, &compare_models(&candidate, baseline.as_ref(), &options(args)?), baseline_label(args))
}

/// Validates against the contract recorded for the model's `production` version.
async fn run_with_registry(args: &ValidateArgs, global: &GlobalArgs, model: &str) -> Result<ExitCode, CliError> {
    // Read the candidate first: a malformed file is reported without needing the database.
    let candidate = load(args, &args.candidate, "candidate")?;
    let options = options(args)?;
    let database = Database::connect(global).await?;
    let production =
        database.registry.production(model).await.map_err(|err| database.error(err))?.ok_or_else(|| {
            CliError::registry(
                format!("model `{model}` has no production version in the registry at {}", database.location),
                Some("compare with a file instead: --baseline PATH".into()),
            )
        })?;
    let contract_json = production.tensor_contract.clone().ok_or_else(|| {
        CliError::registry(
            format!("production version `{}` of model `{model}` has no recorded tensor contract", production.version),
            Some("register it from its model file (rampart register ...), or compare with --baseline PATH".into()),
        )
    })?;
    let contract: ModelContract = serde_json::from_value(contract_json).map_err(|err| {
        CliError::registry(
            format!("the tensor contract recorded for `{model}` {} is not readable: {err}", production.version),
            Some("compare with --baseline PATH instead".into()),
        )
    })?;
    let baseline =
        LoadedModel { path: PathBuf::from(format!("registry:{model}@{}", production.version)), contract, graph: None };
    let label = format!("{model} {} (production)", production.version);
    report(args, &compare_models(&candidate, Some(&baseline), &options), label)
}

/// Reads a model; with `--format json` an unreadable or invalid model is also reported as JSON (on stdout, or
/// in the `--output` file), so a CI job that parses the report sees why instead of an empty document.
fn load(args: &ValidateArgs, path: &std::path::Path, role: &str) -> Result<LoadedModel, CliError> {
    load_model(path).map_err(|err| {
        if args.format == ValidateFormat::Json {
            let mut value = err.to_json();
            if let Some(error) = value.get_mut("error").and_then(|e| e.as_object_mut()) {
                error.insert("role".into(), serde_json::json!(role));
            }
            let text = format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default());
            match &args.output {
                Some(output) => {
                    if let Err(write_err) = std::fs::write(output, text.as_bytes()) {
                        eprintln!("rampart validate: cannot write the report to {}: {write_err}", output.display());
                    }
                }
                None => print!("{text}"),
            }
        }
        let hint = match err {
            rampart_checks::contract::ContractError::InvalidModel { .. } => {
                "re-export the model; ONNX's own checker (onnx.checker.check_model) rejects it too"
            }
            _ => "give an ONNX model file or a safetensors file",
        };
        CliError::input(format!("cannot read the {role} model: {err}"), Some(hint.into()))
    })
}

fn options(args: &ValidateArgs) -> Result<ContractOptions, CliError> {
    if args.batch_sizes.is_empty() || args.batch_sizes.iter().any(|&size| size == 0 || size > 65_536) {
        return Err(CliError::input(
            format!("--batch-sizes must be between 1 and 65536, got {:?}", args.batch_sizes),
            Some("for example --batch-sizes 1,8,64".into()),
        ));
    }
    Ok(ContractOptions { batch_sizes: args.batch_sizes.clone(), allow_new_outputs: !args.disallow_new_outputs })
}

fn baseline_label(args: &ValidateArgs) -> String {
    args.baseline.as_ref().map(|path| path.display().to_string()).unwrap_or_default()
}

fn report(args: &ValidateArgs, report: &ContractReport, baseline: String) -> Result<ExitCode, CliError> {
    let candidate = args.candidate.display().to_string();
    let text = match args.format {
        ValidateFormat::Text => format!("candidate: {candidate}\nbaseline: {baseline}\n{}", report.to_text()),
        ValidateFormat::Json => {
            let mut value = serde_json::to_value(report)
                .map_err(|err| CliError::input(format!("cannot write the report as JSON: {err}"), None))?;
            if let Some(object) = value.as_object_mut() {
                object.insert("problems".into(), serde_json::json!(report.problems()));
            }
            format!("{}\n", serde_json::to_string_pretty(&value).unwrap_or_default())
        }
        ValidateFormat::Junit => junit::contract_report(report, &candidate, &baseline),
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text.as_bytes()).map_err(|err| {
                CliError::input(format!("cannot write the report to {}: {err}", path.display()), None)
            })?;
            eprintln!(
                "rampart validate: {} (report written to {})",
                if report.compatible { "compatible" } else { "INCOMPATIBLE" },
                path.display()
            );
        }
        None => print!("{text}"),
    }
    if report.compatible {
        Ok(ExitCode::SUCCESS)
    } else {
        if args.format == ValidateFormat::Text && args.output.is_none() {
            // The problems are in the report on stdout already.
            return Ok(ExitCode::from(1));
        }
        for problem in report.problems() {
            eprintln!("  - {problem}");
        }
        Ok(ExitCode::from(1))
    }
}
