//! A transform that breaks the row-identity contract one way per config:
//! the host must notice rather than pair acknowledgements with the wrong
//! keys.

use serde::Deserialize;
use sluice_sdk::prelude::*;

#[derive(Deserialize)]
struct Config {
    /// `reverse`: return the rows in reverse order. `swap-first-two`: swap
    /// rows 0 and 1. `lowercase`: lowercase every text value in place
    /// (allowed: identifiers may change, order may not).
    attack: String,
}

pub struct Reorder {
    config: Config,
}

impl Transform for Reorder {
    fn spec() -> PluginSpec {
        PluginSpec::new("hostile-transform", "0.1.0", "Reorders rows (tests only)")
    }

    fn open(config: &str) -> Result<Self, PluginError> {
        let config: Config = parse_config(config)?;
        Ok(Reorder { config })
    }

    fn transform(&mut self, mut batch: Batch) -> Result<Transformed, PluginError> {
        match self.config.attack.as_str() {
            "reverse" => batch.rows.reverse(),
            "swap-first-two" if batch.rows.len() > 1 => batch.rows.swap(0, 1),
            "lowercase" => {
                for row in &mut batch.rows {
                    for value in row.iter_mut() {
                        if let Value::Text(t) = value {
                            *t = t.to_lowercase();
                        }
                    }
                }
            }
            _ => {}
        }
        Ok(Transformed::all(batch))
    }
}

sluice_sdk::export_transform!(Reorder);
