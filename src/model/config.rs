//! The architecture as stored in a model directory's `config.json`.
use serde::{Deserialize, Serialize};

/// How the decoder's cross-attention fuses the vision and text memories.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fusion {
    /// One cross-attention over the concatenated `[vision; text]` memory.
    Concat,
    /// Cross-attention to vision, then to text, each its own sublayer.
    Separate,
    /// As `separate`, each output scaled by a learned `tanh(alpha)` gate.
    Gated,
}

impl Fusion {
    pub const ALL: [Fusion; 3] = [Fusion::Concat, Fusion::Separate, Fusion::Gated];

    pub fn name(self) -> &'static str {
        match self {
            Fusion::Concat => "concat",
            Fusion::Separate => "separate",
            Fusion::Gated => "gated",
        }
    }

    /// One line on what the strategy does, for help texts.
    pub fn description(self) -> &'static str {
        match self {
            Fusion::Concat => "One cross-attention over the concatenated `[vision; text]` memory",
            Fusion::Separate => "Cross-attention to vision, then to text, each its own sublayer",
            Fusion::Gated => "As `separate`, each output scaled by a learned `tanh(alpha)` gate",
        }
    }
}

impl std::str::FromStr for Fusion {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        Fusion::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| format!("unknown fusion '{name}'; use concat, separate or gated"))
    }
}

impl std::fmt::Display for Fusion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How an image is brought to `image_size × image_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizeMode {
    /// Scale both sides to the target size, ignoring the aspect ratio.
    Stretch,
    /// Scale the short side to the target size, then cut the centre square.
    CenterCrop,
}

/// How the vision encoder turns pixels into tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VisionStem {
    /// One linear projection of each `patch_size`² patch (ViT).
    #[default]
    Patch,
    /// log2(`patch_size`) 3×3 stride-2 convolutions with ReLU between them.
    Conv,
}

/// Which objects the mention loss marks for a question (`data/cells.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MentionTarget {
    /// The objects the question's colour, shape and size words describe: for
    /// "what shape is left of the star?", the star.
    #[default]
    Named,
    /// The objects the answer is read from: for "what shape is left of the
    /// star?", the shape left of it; for "how many red shapes?", the red ones.
    Subjects,
}

impl MentionTarget {
    fn is_named(&self) -> bool {
        *self == MentionTarget::Named
    }
}

/// Where the vision tokens learn their place in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum VisionPositions {
    /// A learned table, one row per token: no 2-D structure of its own.
    #[default]
    Learned,
    /// Fixed 2-D sine-cosine features: half the channels encode the row,
    /// half the column, so "left of" is the same direction in every row.
    #[serde(rename = "sin-cos-2d")]
    SinCos2d,
    /// Two extra input channels hold each pixel's column and row, scaled to
    /// the range of the normalised pixels, so the stem embeds a token's place
    /// at the same scale as its content. No table is added. With a
    /// `vision_encoder`, a patch embedding of the pixels and these channels is
    /// added to the pretrained tokens.
    Coordinates,
}

/// The feed-forward non-linearity. ReLU is ~40× cheaper than GELU in candle on CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    Relu,
    Gelu,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub fusion: Fusion,
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub d_ff: usize,
    pub vision_layers: usize,
    pub text_layers: usize,
    pub decoder_layers: usize,
    pub activation: Activation,
    pub image_size: usize,
    pub patch_size: usize,
    /// Older model directories have none: they use patches.
    #[serde(default)]
    pub vision_stem: VisionStem,
    /// Older model directories have none: a learned table.
    #[serde(default)]
    pub vision_positions: VisionPositions,
    /// LayerNorm the stem's tokens before the positions are added. Without
    /// it a plain 16×16 patch embeds with a norm near 130 against about 1
    /// for a learned position, and the place of a token is lost
    /// (docs/findings.md, "Position and the stem's scale"). Older model
    /// directories have none: off.
    #[serde(default)]
    pub vision_stem_norm: bool,
    pub resize: ResizeMode,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    /// Longest question the text encoder accepts (tokens, without specials).
    pub max_text_len: usize,
    /// Longest decoder sequence (BOS + generated tokens).
    pub max_decode_len: usize,
    pub pad_id: u32,
    pub bos_id: u32,
    pub eos_id: u32,
    pub unk_id: u32,
    /// The text-encoder input used when the task is captioning.
    pub caption_prompt: String,
    /// Give every cross-attention a learned extra key/value that is always
    /// valid (PyTorch's `add_bias_kv`). Softmax weights sum to one, so without
    /// it a query that matches nothing ("is there a brown shape?" over a red
    /// one) still returns an average of patches; with it, the mass can go to
    /// the sink, whose value can say "absent". Off in older model directories.
    #[serde(default)]
    pub cross_attention_sink: bool,
    /// Let the question tokens attend to the image patches inside the text
    /// encoder, before the decoder fuses the two memories (see `text.rs`).
    /// Off in older model directories.
    #[serde(default)]
    pub text_cross_attention: bool,
    /// Layers in which the vision tokens read the question before the decoder
    /// (see `conditioning.rs`). Older model directories have none: 0.
    #[serde(default)]
    pub question_vision_layers: usize,
    /// In `separate` and `gated` decoder layers, attend to the question
    /// before the image, so that the first layer's image query already
    /// knows the question (`concat` has one attention and ignores this).
    /// Older model directories attend to the image first: false.
    #[serde(default)]
    pub text_before_vision: bool,
    /// The gated strategy's initial `alpha` (gate = `tanh(alpha)`). Flamingo
    /// starts at 0 so that a pretrained decoder is undisturbed. We train from
    /// scratch; our closed-gate run stayed at the yes/no colour answer prior
    /// and the open-gate one did not (docs/findings.md, "Gated with open initial gates"; one seed each), so
    /// the shipped size starts at 1 (gate 0.76). Older model directories
    /// have none: 0.
    #[serde(default)]
    pub gate_init: f32,
    /// Weight of an auxiliary training loss that asks every vision token,
    /// through a linear head, for the colour, shape and size of the object
    /// under it (streamed scenes only; `data/cells.rs`). 0, as in older
    /// model directories: no head.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub attribute_loss: f32,
    /// Weight of an auxiliary training loss that asks every
    /// question-conditioned vision token, through a linear head, whether the
    /// question describes the object under it (streamed scenes only;
    /// `data/cells.rs`). Needs `question_vision_layers` ≥ 1. 0, as in older
    /// model directories: no head.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub mention_loss: f32,
    /// Which objects the mention loss marks. `named`, as in older model
    /// directories, is not written.
    #[serde(default, skip_serializing_if = "MentionTarget::is_named")]
    pub mention_target: MentionTarget,
    /// Not stored: build the model for inference only (contiguous transposed
    /// weights, fused LayerNorm). Such a model gives no gradients.
    #[serde(skip)]
    pub inference: bool,
    /// A pretrained encoder directory whose pooled, projected tokens replace
    /// the vision stem (`pretrained.rs`); `image_size` / `patch_size` must be
    /// its `tokens`. Older model directories have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vision_encoder: Option<super::pretrained::VisionEncoderSpec>,
    /// A pretrained BERT directory whose per-word features replace the text
    /// encoder's token and position tables (`pretrained_text.rs`). Older
    /// model directories have none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_encoder: Option<super::pretrained_text::TextEncoderSpec>,
}

fn is_zero(value: &f32) -> bool {
    *value == 0.0
}

/// A pretrained encoder that a config fine-tunes (`freeze: false`).
#[derive(Debug, Clone, PartialEq)]
pub struct FineTunedEncoder {
    /// The start of its variables' names in the model.
    pub prefix: String,
    /// The directory its initial weights come from.
    pub dir: std::path::PathBuf,
    /// Its learning rate as a fraction of the model's.
    pub lr_scale: f64,
}

impl Config {
    /// The pretrained encoders whose weights this model trains.
    pub fn fine_tuned_encoders(&self) -> Vec<FineTunedEncoder> {
        let encoder = |block: &str, dir: &std::path::Path, lr_scale: f64| FineTunedEncoder {
            prefix: format!("{block}.pretrained.{}.", super::pretrained::ENCODER_PREFIX),
            dir: dir.to_path_buf(),
            lr_scale,
        };
        let vision = (self.vision_encoder.as_ref())
            .filter(|s| !s.freeze)
            .map(|s| encoder("vision", &s.dir, s.lr_scale));
        let text = (self.text_encoder.as_ref())
            .filter(|s| !s.freeze)
            .map(|s| encoder("text", &s.dir, s.lr_scale));
        vision.into_iter().chain(text).collect()
    }

    /// The shipped size: 64×64 images, 16×16 patches (16 tokens), d 128, 4/2/2 layers.
    /// At equal steps 8×8 patches scored about a point higher on easy-VQA, but
    /// 16×16 patches train much faster, and the time buys more steps.
    pub fn small(fusion: Fusion, vocab_size: usize) -> Self {
        Config {
            fusion,
            vocab_size,
            d_model: 128,
            n_heads: 4,
            d_ff: 512,
            vision_layers: 4,
            text_layers: 2,
            decoder_layers: 2,
            activation: Activation::Relu,
            image_size: 64,
            patch_size: 16,
            vision_stem: VisionStem::Patch,
            vision_positions: VisionPositions::Learned,
            vision_stem_norm: false,
            resize: ResizeMode::Stretch,
            image_mean: [0.5, 0.5, 0.5],
            image_std: [0.25, 0.25, 0.25],
            max_text_len: 32,
            max_decode_len: 40,
            pad_id: 0,
            bos_id: 1,
            eos_id: 2,
            unk_id: 3,
            caption_prompt: "caption".to_string(),
            cross_attention_sink: true,
            text_cross_attention: true,
            question_vision_layers: 0,
            text_before_vision: false,
            gate_init: 1.0,
            attribute_loss: 0.0,
            mention_loss: 0.0,
            mention_target: MentionTarget::Named,
            inference: false,
            vision_encoder: None,
            text_encoder: None,
        }
    }

    /// A very small configuration for tests.
    pub fn tiny(fusion: Fusion, vocab_size: usize) -> Self {
        Config {
            d_model: 32,
            n_heads: 4,
            d_ff: 64,
            vision_layers: 1,
            text_layers: 1,
            decoder_layers: 2,
            image_size: 16,
            patch_size: 4,
            ..Config::small(fusion, vocab_size)
        }
    }

    pub fn head_dim(&self) -> usize {
        self.d_model / self.n_heads
    }

    /// The conv stem's output channels per layer, doubling up to `d_model`.
    pub fn conv_stem_channels(&self) -> Vec<usize> {
        let layers = self.patch_size.trailing_zeros() as usize;
        (0..layers)
            .map(|i| (self.d_model >> (layers - 1 - i)).max(1))
            .collect()
    }

    /// Channels the stem reads: RGB, plus column and row with `Coordinates`.
    pub fn vision_input_channels(&self) -> usize {
        match self.vision_positions {
            VisionPositions::Coordinates => 5,
            VisionPositions::Learned | VisionPositions::SinCos2d => 3,
        }
    }

    pub fn num_patches(&self) -> usize {
        self.grid_side().pow(2)
    }

    /// Tokens per side of the vision token grid.
    pub fn grid_side(&self) -> usize {
        self.image_size / self.patch_size
    }

    /// Checks the invariants the model code relies on; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        // Limits far above any model this code trains on a CPU, checked before
        // anything is allocated: a typo such as `"d_model": 1000000000` must
        // get a message, not an abort of the allocator.
        const MAX_WIDTH: usize = 8192;
        const MAX_LAYERS: usize = 64;
        const MAX_SEQUENCE: usize = 1024;
        const MAX_VOCAB: usize = 1 << 20;
        const MAX_PARAMETERS: u128 = 1_000_000_000;
        let mut errors = Vec::new();
        let mut range = |name: &str, value: usize, min: usize, max: usize| {
            if !(min..=max).contains(&value) {
                errors.push(format!("{name} ({value}) must be from {min} to {max}"));
            }
        };
        range("d_model", self.d_model, 1, MAX_WIDTH);
        range("d_ff", self.d_ff, 1, 4 * MAX_WIDTH);
        range("n_heads", self.n_heads, 1, MAX_WIDTH);
        range("vision_layers", self.vision_layers, 0, MAX_LAYERS);
        range("text_layers", self.text_layers, 0, MAX_LAYERS);
        range("decoder_layers", self.decoder_layers, 0, MAX_LAYERS);
        range(
            "question_vision_layers",
            self.question_vision_layers,
            0,
            MAX_LAYERS,
        );
        range("vocab_size", self.vocab_size, 1, MAX_VOCAB);
        range("image_size", self.image_size, 1, 4096);
        range("patch_size", self.patch_size, 1, 4096);
        range("max_text_len", self.max_text_len, 1, MAX_SEQUENCE);
        range("max_decode_len", self.max_decode_len, 2, MAX_SEQUENCE);
        if self.patch_size > 0 && self.image_size / self.patch_size > 64 {
            errors.push(format!(
                "image_size / patch_size ({} / {}) must be at most 64 patches per side",
                self.image_size, self.patch_size
            ));
        }
        if errors.is_empty() {
            // Every weight matrix, generously rounded up; u128 cannot overflow here.
            let d = self.d_model as u128;
            let block = 4 * d * d + 2 * d * self.d_ff as u128;
            let layers = (self.vision_layers
                + self.text_layers
                + self.decoder_layers
                + self.question_vision_layers) as u128;
            let cross = 4
                * d
                * d
                * (self.text_layers + 2 * self.decoder_layers + self.question_vision_layers)
                    as u128;
            let tokens = (self.num_patches() + self.max_text_len + self.max_decode_len) as u128;
            let embeddings = d * (3 * self.vocab_size as u128 + tokens)
                + self.vision_input_channels() as u128 * d * (self.patch_size as u128).pow(2);
            let parameters = layers * block + cross + embeddings;
            if parameters > MAX_PARAMETERS {
                errors.push(format!(
                    "the model would have about {parameters} parameters, above the limit of {MAX_PARAMETERS}; lower d_model, d_ff, the layer counts or vocab_size"
                ));
            }
        }
        if !self.gate_init.is_finite() {
            errors.push(format!(
                "gate_init ({}) must be a finite number",
                self.gate_init
            ));
        }
        for (name, weight) in [
            ("attribute_loss", self.attribute_loss),
            ("mention_loss", self.mention_loss),
        ] {
            if !(weight.is_finite() && weight >= 0.0) {
                errors.push(format!(
                    "{name} ({weight}) must be a finite number, 0 or above"
                ));
            }
        }
        if self.mention_loss > 0.0 && self.question_vision_layers == 0 {
            errors.push(
                "mention_loss needs question_vision_layers of 1 or more: the vision tokens must read the question".into(),
            );
        }
        if !self.mention_target.is_named() && self.mention_loss == 0.0 {
            errors.push(
                "mention_target is set but mention_loss is 0: give mention_loss a weight above 0, or leave mention_target out".into(),
            );
        }
        if self.n_heads == 0 || !self.d_model.is_multiple_of(self.n_heads) {
            errors.push(format!(
                "d_model ({}) must be a multiple of n_heads ({})",
                self.d_model, self.n_heads
            ));
        }
        if let Some(spec) = &self.vision_encoder {
            if spec.image_size != self.image_size
                || self.image_size != spec.tokens * self.patch_size
            {
                errors.push(format!(
                    "with a vision_encoder, image_size ({}) must equal its image_size ({}) and patch_size ({}) times its tokens ({})",
                    self.image_size, spec.image_size, self.patch_size, spec.tokens
                ));
            }
            if self.vision_stem != VisionStem::Patch {
                errors.push("a vision_encoder replaces the stem: use vision_stem \"patch\"".into());
            }
        }
        if let Some(Err(e)) = self.text_encoder.as_ref().map(|spec| spec.check()) {
            errors.push(e);
        }
        if self.patch_size == 0 || !self.image_size.is_multiple_of(self.patch_size) {
            errors.push(format!(
                "image_size ({}) must be a multiple of patch_size ({})",
                self.image_size, self.patch_size
            ));
        }
        if self.vision_stem == VisionStem::Conv
            && (self.patch_size < 2 || !self.patch_size.is_power_of_two())
        {
            errors.push(format!(
                "patch_size ({}) must be a power of two, at least 2, with vision_stem \"conv\"",
                self.patch_size
            ));
        }
        if self.vision_positions == VisionPositions::SinCos2d && !self.d_model.is_multiple_of(4) {
            errors.push(format!(
                "d_model ({}) must be a multiple of 4 with vision_positions \"sin-cos-2d\"",
                self.d_model
            ));
        }
        for (name, id) in [
            ("pad_id", self.pad_id),
            ("bos_id", self.bos_id),
            ("eos_id", self.eos_id),
            ("unk_id", self.unk_id),
        ] {
            if id as usize >= self.vocab_size {
                errors.push(format!(
                    "{name} ({id}) must be below vocab_size ({})",
                    self.vocab_size
                ));
            }
        }
        if self.image_std.iter().any(|s| !(s.is_finite() && *s > 0.0)) {
            errors.push("image_std values must be positive finite numbers".to_string());
        }
        if self.image_mean.iter().any(|m| !m.is_finite()) {
            errors.push("image_mean values must be finite numbers".to_string());
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors.join("; "))
        }
    }
}
