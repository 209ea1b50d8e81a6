//! The reference smoke trainer: a residual MLP trained with plain SGD on synthetic regression data,
//! emitting one protocol line per step.
//!
//! Everything random (data, initial weights) comes from a seeded generator in this file, so a run is
//! reproducible on CPU. Turning the residual connections off makes a deep `tanh` stack whose
//! gradients vanish; a high learning rate makes SGD blow up. Both are what the smoke evaluator must
//! catch.

use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use candle_nn::{Optimizer, SGD};

use super::protocol::MetricLine;

/// Where the trainer runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TrainDevice {
    /// The CPU (default build).
    Cpu,
    /// An NVIDIA GPU by ordinal (needs the `cuda` cargo feature).
    Cuda(usize),
}

/// What to train and how.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: u64,
    /// SGD learning rate.
    pub learning_rate: f64,
    /// Whether blocks add their input back (`h + f(h)`); off gives a plain deep MLP.
    pub residual: bool,
    /// Number of hidden blocks.
    pub depth: usize,
    /// Hidden width.
    pub hidden: usize,
    /// Input features of the synthetic data.
    pub input_dim: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Seed of the data and weight generator.
    pub seed: u64,
    /// Device.
    pub device: TrainDevice,
    /// Start from these weights (a safetensors file with the model's tensors by name: `stem.weight`,
    /// `blocks.0.0.weight`, ..., `head.bias`) instead of the seeded initialisation: the candidate model a smoke
    /// run fine-tunes. A missing file, a missing tensor or a wrong shape is an error, not a silent fresh start.
    pub init_from: Option<std::path::PathBuf>,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            steps: 100,
            learning_rate: 0.05,
            residual: true,
            depth: 8,
            hidden: 64,
            input_dim: 16,
            batch_size: 64,
            seed: 0,
            device: TrainDevice::Cpu,
            init_from: None,
        }
    }
}

/// Why training could not run (not why it went badly: that is in the metric lines).
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A configuration value is out of range.
    #[error("invalid training configuration: {0}")]
    Config(String),
    /// The tensor library failed (for example, CUDA was asked for but not built in).
    #[error("training failed: {0}")]
    Tensor(#[from] candle_core::Error),
    /// Writing a metric line failed.
    #[error("cannot write metric line: {0}")]
    Output(#[from] std::io::Error),
}

impl TrainError {
    /// Short, stable label for counting failures in metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            TrainError::Config(_) => "config",
            TrainError::Tensor(_) => "tensor",
            TrainError::Output(_) => "output",
        }
    }
}

/// What a finished run measured.
#[derive(Clone, Debug, PartialEq)]
pub struct TrainSummary {
    /// Steps run.
    pub steps: u64,
    /// Total wall-clock seconds of the steps.
    pub seconds: f64,
    /// Steps per second.
    pub steps_per_second: f64,
    /// Loss at the last step.
    pub final_loss: f64,
}

/// SplitMix64: small, seedable, good enough for synthetic data.
struct Generator(u64);

impl Generator {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }

    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(f32::MIN_POSITIVE);
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }

    fn uniform_vec(&mut self, len: usize, bound: f32) -> Vec<f32> {
        (0..len).map(|_| (self.uniform() * 2.0 - 1.0) * bound).collect()
    }

    fn normal_vec(&mut self, len: usize, scale: f32) -> Vec<f32> {
        (0..len).map(|_| self.normal() * scale).collect()
    }
}

/// A linear layer `x W + b` with PyTorch's default initialisation.
struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    fn new(generator: &mut Generator, inputs: usize, outputs: usize, device: &Device) -> Result<Linear, TrainError> {
        let bound = 1.0 / (inputs as f32).sqrt();
        let weight = Tensor::from_vec(generator.uniform_vec(inputs * outputs, bound), (inputs, outputs), device)?;
        let bias = Tensor::from_vec(generator.uniform_vec(outputs, bound), outputs, device)?;
        Ok(Linear { weight: Var::from_tensor(&weight)?, bias: Var::from_tensor(&bias)? })
    }

    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        x.matmul(self.weight.as_tensor())?.broadcast_add(self.bias.as_tensor())
    }

    fn vars(&self) -> [Var; 2] {
        [self.weight.clone(), self.bias.clone()]
    }
}

/// The model: stem, `depth` blocks of `Linear -> tanh -> Linear` (plus skip when residual), head.
struct ResidualMlp {
    stem: Linear,
    blocks: Vec<(Linear, Linear)>,
    head: Linear,
    residual: bool,
}

impl ResidualMlp {
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let mut h = self.stem.forward(x)?.tanh()?;
        for (first, second) in &self.blocks {
            let branch = second.forward(&first.forward(&h)?.tanh()?)?;
            h = if self.residual { (h + branch)? } else { branch.tanh()? };
        }
        self.head.forward(&h)
    }

    /// Every variable with its name in a safetensors file.
    fn named_vars(&self) -> Vec<(String, Var)> {
        let mut named = Vec::new();
        let mut add = |prefix: String, layer: &Linear| {
            named.push((format!("{prefix}.weight"), layer.weight.clone()));
            named.push((format!("{prefix}.bias"), layer.bias.clone()));
        };
        add("stem".into(), &self.stem);
        for (index, (first, second)) in self.blocks.iter().enumerate() {
            add(format!("blocks.{index}.0"), first);
            add(format!("blocks.{index}.1"), second);
        }
        add("head".into(), &self.head);
        named
    }

    /// Sets the weights from a safetensors file; every tensor must be there with the model's shape.
    fn load(&self, path: &std::path::Path, device: &Device) -> Result<(), TrainError> {
        let tensors = candle_core::safetensors::load(path, device).map_err(|err| {
            TrainError::Config(format!("cannot read the model to start from ({}): {err}", path.display()))
        })?;
        for (name, var) in self.named_vars() {
            let tensor = tensors.get(&name).ok_or_else(|| {
                TrainError::Config(format!("{} has no tensor {name:?}: not a model of this shape", path.display()))
            })?;
            if tensor.dims() != var.dims() {
                return Err(TrainError::Config(format!(
                    "{}: tensor {name:?} has shape {:?}, the model needs {:?}",
                    path.display(),
                    tensor.dims(),
                    var.dims()
                )));
            }
            var.set(&tensor.to_dtype(DType::F32)?)?;
        }
        Ok(())
    }

    fn vars(&self) -> Vec<Var> {
        let mut vars: Vec<Var> = self.stem.vars().into();
        for (first, second) in &self.blocks {
            vars.extend(first.vars());
            vars.extend(second.vars());
        }
        vars.extend(self.head.vars());
        vars
    }
}

fn device_of(device: TrainDevice) -> Result<Device, TrainError> {
    match device {
        TrainDevice::Cpu => Ok(Device::Cpu),
        TrainDevice::Cuda(ordinal) => Ok(Device::new_cuda(ordinal)?),
    }
}

fn build_model(config: &TrainConfig, generator: &mut Generator, device: &Device) -> Result<ResidualMlp, TrainError> {
    let (inputs, hidden) = (config.input_dim, config.hidden);
    Ok(ResidualMlp {
        stem: Linear::new(generator, inputs, hidden, device)?,
        blocks: (0..config.depth)
            .map(|_| {
                Ok((Linear::new(generator, hidden, hidden, device)?, Linear::new(generator, hidden, hidden, device)?))
            })
            .collect::<Result<_, TrainError>>()?,
        head: Linear::new(generator, hidden, 1, device)?,
        residual: config.residual,
    })
}

/// Writes the seeded initial weights of `config`'s model as a safetensors file (what `init_from` reads): a model
/// artifact to sign, store and smoke-train in tests and the demo.
pub fn save_initial_weights(config: &TrainConfig, path: &std::path::Path) -> Result<(), TrainError> {
    let device = device_of(config.device)?;
    let mut generator = Generator(config.seed);
    // The same draws as `train`: the teacher first, then the model.
    let _teacher = generator.normal_vec(config.input_dim * 2, 1.0);
    let model = build_model(config, &mut generator, &device)?;
    let tensors: std::collections::HashMap<String, Tensor> =
        model.named_vars().into_iter().map(|(name, var)| (name, var.as_tensor().clone())).collect();
    candle_core::safetensors::save(&tensors, path)?;
    Ok(())
}

/// Trains for `config.steps` steps, handing each step's metric line to `emit`.
///
/// A run that diverges is not an error: its NaN losses and huge gradient norms are reported as they are.
pub fn train(
    config: &TrainConfig,
    mut emit: impl FnMut(&MetricLine) -> std::io::Result<()>,
) -> Result<TrainSummary, TrainError> {
    let limits = [
        ("depth", config.depth, 1, 1024),
        ("hidden", config.hidden, 1, 8192),
        ("input_dim", config.input_dim, 1, 8192),
        ("batch_size", config.batch_size, 1, 65536),
    ];
    for (name, value, min, max) in limits {
        if !(min..=max).contains(&value) {
            return Err(TrainError::Config(format!("{name} must be between {min} and {max}, got {value}")));
        }
    }
    if !(config.learning_rate.is_finite() && config.learning_rate > 0.0) {
        return Err(TrainError::Config(format!(
            "learning rate must be a positive number, got {}",
            config.learning_rate
        )));
    }
    let device = device_of(config.device)?;
    let mut generator = Generator(config.seed);
    let inputs = config.input_dim;

    // The task: y = sin(x.a) + 0.5 tanh(x.b), a fixed random "teacher".
    let teacher_scale = 1.0 / (inputs as f32).sqrt();
    let teacher = Tensor::from_vec(generator.normal_vec(inputs * 2, teacher_scale * 2.0), (inputs, 2), &device)?;

    let model = build_model(config, &mut generator, &device)?;
    if let Some(path) = &config.init_from {
        model.load(path, &device)?;
    }
    let vars = model.vars();
    let mut optimizer = SGD::new(vars.clone(), config.learning_rate)?;

    let started = Instant::now();
    let mut final_loss = f64::NAN;
    for step in 1..=config.steps {
        let step_started = Instant::now();
        let x = Tensor::from_vec(
            generator.normal_vec(config.batch_size * inputs, 1.0),
            (config.batch_size, inputs),
            &device,
        )?;
        let projected = x.matmul(&teacher)?;
        let y = (projected.narrow(1, 0, 1)?.sin()? + (projected.narrow(1, 1, 1)?.tanh()? * 0.5)?)?;
        let prediction = model.forward(&x)?;
        let loss = candle_nn::loss::mse(&prediction, &y)?;
        let grads = loss.backward()?;
        let mut squared = Tensor::zeros((), DType::F32, &device)?;
        for var in &vars {
            if let Some(grad) = grads.get(var) {
                squared = (squared + grad.sqr()?.sum_all()?)?;
            }
        }
        optimizer.step(&grads)?;
        let loss_value = f64::from(loss.to_scalar::<f32>()?);
        let grad_norm = f64::from(squared.to_scalar::<f32>()?).sqrt();
        let step_time_s = step_started.elapsed().as_secs_f64();
        final_loss = loss_value;
        emit(&MetricLine {
            step,
            loss: loss_value,
            grad_norm: Some(grad_norm),
            step_time_s: Some(step_time_s),
            gpu_mem_bytes: None,
        })?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(TrainSummary {
        steps: config.steps,
        seconds,
        steps_per_second: if seconds > 0.0 { config.steps as f64 / seconds } else { 0.0 },
        final_loss,
    })
}
