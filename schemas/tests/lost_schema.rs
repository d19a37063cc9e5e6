//! Tests that need the official LoST schema skip it, with a word on how to
//! enable them, on a clone with nothing beside it, and require it under CI.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use common::{LostRng, decide_lost_rng};

#[test]
fn a_clone_without_shared_skips_lost_validation_and_says_how_to_enable_it() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("shared/reference/lost/lost1.rng");
    let LostRng::Skip(how) = decide_lost_rng(None, false, &absent).unwrap() else { panic!("not skipped") };
    assert!(how.contains("SIGNPOST_LOST_RNG"), "{how}");
    assert!(how.contains(&absent.display().to_string()), "{how}");
    // An empty variable is as good as none.
    assert!(matches!(decide_lost_rng(Some(""), false, &absent), Ok(LostRng::Skip(_))));
}

#[test]
fn under_ci_the_lost_schema_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let absent = dir.path().join("lost1.rng");
    let e = decide_lost_rng(None, true, &absent).unwrap_err();
    assert!(e.contains("CI=true") && e.contains("SIGNPOST_LOST_RNG"), "{e}");
}

#[test]
fn an_explicit_path_must_exist_and_wins_over_the_copy_beside() {
    let dir = tempfile::tempdir().unwrap();
    let beside = dir.path().join("beside.rng");
    let explicit = dir.path().join("explicit.rng");
    std::fs::write(&beside, "").unwrap();
    assert_eq!(decide_lost_rng(None, false, &beside).unwrap(), LostRng::Found(beside.clone()));
    let e = decide_lost_rng(Some(explicit.to_str().unwrap()), false, &beside).unwrap_err();
    assert!(e.contains("is not a file"), "{e}");
    std::fs::write(&explicit, "").unwrap();
    assert_eq!(decide_lost_rng(Some(explicit.to_str().unwrap()), true, &beside).unwrap(), LostRng::Found(explicit));
}
