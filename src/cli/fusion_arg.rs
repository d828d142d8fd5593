//! How the command line names fusion strategies: one (`--fusion gated`, with
//! each value's description in `--help`) or a list (`--fusion concat,gated`).
use std::str::FromStr;

use clap::builder::PossibleValue;

use crate::model::Fusion;

impl clap::ValueEnum for Fusion {
    fn value_variants<'a>() -> &'a [Self] {
        &Fusion::ALL
    }

    fn to_possible_value(&self) -> Option<PossibleValue> {
        Some(PossibleValue::new(self.name()).help(self.description()))
    }
}

/// Fusion strategies named on the command line: "all" or "concat,gated".
#[derive(Debug, Clone, PartialEq)]
pub struct FusionList(pub Vec<Fusion>);

impl FromStr for FusionList {
    type Err = String;

    fn from_str(value: &str) -> std::result::Result<Self, String> {
        if value.trim() == "all" {
            return Ok(FusionList(Fusion::ALL.to_vec()));
        }
        let mut out = Vec::new();
        for name in value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let fusion: Fusion = name.parse().map_err(|_| {
                format!("unknown fusion '{name}'; use concat, separate, gated or all")
            })?;
            if out.contains(&fusion) {
                return Err(format!("fusion '{name}' is named twice"));
            }
            out.push(fusion);
        }
        if out.is_empty() {
            return Err("name at least one fusion: concat, separate, gated or all".into());
        }
        Ok(FusionList(out))
    }
}

#[cfg(test)]
mod tests {
    use super::FusionList;
    use crate::model::Fusion;

    #[test]
    fn fusion_lists_parse_all_and_names() {
        assert_eq!(
            "all".parse::<FusionList>(),
            Ok(FusionList(Fusion::ALL.to_vec()))
        );
        let names = |list: FusionList| list.0.iter().map(|f| f.name()).collect::<Vec<_>>();
        assert_eq!(
            "gated, concat".parse::<FusionList>().map(names),
            Ok(vec!["gated", "concat"])
        );
        assert!("concat,concat".parse::<FusionList>().is_err());
        assert!("fused".parse::<FusionList>().is_err());
    }
}
