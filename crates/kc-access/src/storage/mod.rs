//! SQL of the access schema. Functions take a connection (inside the caller's transaction
//! when atomicity matters) and return domain types, never proto types.
//!
//! Levels are stored as ranks (`smallint`, 0 = NONE / NO_ACCESS): one column per tool in
//! `grants`, and arrays of eight ranks (the seven tools in DOMAIN.md's order, then support)
//! in requests and domain policies.

pub mod audit;
pub mod blocks;
pub mod effective;
pub mod grants;
pub mod invalidation;
pub mod policies;
pub mod requests;
pub mod sites;
pub mod users;

use crate::domain::{ContactRole, Grants, RoleSet, SupportLevel, Tool, ToolAccess, ToolLevel};

fn decode_error(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("{what} has an out-of-range level").into())
}

/// The eight stored ranks of `grants`: seven tools, then support.
pub fn ranks_of(grants: &Grants) -> Vec<i16> {
    let mut ranks: Vec<i16> = grants
        .tools
        .levels()
        .iter()
        .map(|level| i16::from(level.rank()))
        .collect();
    ranks.push(i16::from(grants.support.rank()));
    ranks
}

/// The grants of eight stored ranks; `what` names the column in the error.
pub fn grants_of_ranks(ranks: &[i16], what: &str) -> Result<Grants, sqlx::Error> {
    if ranks.len() != 8 {
        return Err(decode_error(what));
    }
    let rank = |value: i16| u8::try_from(value).map_err(|_| decode_error(what));
    let mut tools = ToolAccess::NONE;
    for (tool, value) in Tool::ALL.into_iter().zip(ranks) {
        let level = ToolLevel::from_rank(tool, rank(*value)?).ok_or_else(|| decode_error(what))?;
        tools = tools.with(level);
    }
    let support = SupportLevel::from_rank(rank(ranks[7])?).ok_or_else(|| decode_error(what))?;
    Ok(Grants { tools, support })
}

/// The role set of stored role numbers; unknown numbers are a decode error.
pub fn roles_of(numbers: &[i16]) -> Result<RoleSet, sqlx::Error> {
    numbers
        .iter()
        .map(|number| {
            ContactRole::from_number(i32::from(*number))
                .ok_or_else(|| sqlx::Error::Decode("site_roles.role has an unknown value".into()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{ManageAccess, SoftwareAccess};

    #[test]
    fn ranks_round_trip() {
        let grants = Grants {
            tools: ToolAccess {
                software: SoftwareAccess::DownloadsAndMedia,
                manage_access: ManageAccess::View,
                ..ToolAccess::NONE
            },
            support: SupportLevel::Full,
        };
        let ranks = ranks_of(&grants);
        assert_eq!(ranks, vec![2, 0, 0, 0, 1, 0, 0, 2]);
        assert_eq!(grants_of_ranks(&ranks, "x").unwrap(), grants);
        assert!(grants_of_ranks(&[0; 7], "x").is_err());
        assert!(grants_of_ranks(&[4, 0, 0, 0, 0, 0, 0, 0], "x").is_err());
        assert!(grants_of_ranks(&[0, 0, 0, 0, 0, 0, 0, -1], "x").is_err());
    }
}
