//! The CLI's error type: what went wrong, what the user can do about it, and the exit code it maps to.

/// An error the CLI reports. `Failed` is a check or rollout that did not pass (exit 1); every other variant means
/// the command could not do its job (exit 2). Each carries a hint saying what to do next.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The check ran and did not pass.
    #[error("{message}")]
    Failed { message: String, hint: Option<String> },
    /// Bad arguments, or a file that cannot be read or parsed.
    #[error("{message}")]
    Input { message: String, hint: Option<String> },
    /// The Kubernetes API server refused or could not be reached, or the kubeconfig is unusable.
    #[error("{message}")]
    Kubernetes { message: String, hint: Option<String> },
    /// The registry database refused or could not be reached.
    #[error("{message}")]
    Registry { message: String, hint: Option<String> },
}

impl CliError {
    pub fn failed(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Failed { message: message.into(), hint }
    }

    pub fn input(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Input { message: message.into(), hint }
    }

    pub fn kubernetes(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Kubernetes { message: message.into(), hint }
    }

    pub fn registry(message: impl Into<String>, hint: Option<String>) -> Self {
        CliError::Registry { message: message.into(), hint }
    }

    /// What the user can do about it.
    pub fn hint(&self) -> Option<&str> {
        match self {
            CliError::Failed { hint, .. }
            | CliError::Input { hint, .. }
            | CliError::Kubernetes { hint, .. }
            | CliError::Registry { hint, .. } => hint.as_deref(),
        }
    }

    /// 1 for a check that did not pass, 2 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Failed { .. } => 1,
            CliError::Input { .. } | CliError::Kubernetes { .. } | CliError::Registry { .. } => 2,
        }
    }
}
