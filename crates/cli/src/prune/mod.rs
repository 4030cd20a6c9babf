//! Pruning a model's linear layers: which weights go (`select`), and the
//! f32 forward pass that gives Wanda its input norms (`forward`).

pub mod forward;
pub mod select;
