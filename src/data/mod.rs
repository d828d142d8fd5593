//! Data: manifests, image preprocessing, synthetic scenes, importers.
pub mod batch;
pub mod cells;
pub mod coco;
pub mod draw;
pub mod easy_vqa;
pub mod files;
pub mod filter;
pub mod image;
pub mod manifest;
pub mod resize;
pub mod scene;
pub mod split;
pub mod stream;
pub mod synth;
pub mod synth_text;
pub mod vqav2;
pub mod walk;
