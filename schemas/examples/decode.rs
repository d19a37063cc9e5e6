//! Decodes Signpost documents and says what they mean.
//!
//!     cargo run -p signpost-schemas --example decode              # every golden sample
//!     cargo run -p signpost-schemas --example decode -- FILE...   # your own files
//!
//! Each document is tried as a LoST request, a LoST response, then each sp
//! document kind; the first that decodes is described. A document that
//! nothing accepts gets the LoST error a Signpost server would answer.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::path::PathBuf;

use signpost_schemas::sp::{FeedFrame, Provision, ProvisionResult, RootTable};
use signpost_schemas::*;

fn describe(body: &[u8]) -> Result<String, DecodeError> {
    if let Ok(r) = Request::decode(body, &Limits::MESSAGE) {
        return Ok(match r {
            Request::FindService(f) => match f.csi_location() {
                Ok((_, csi)) => format!(
                    "findService for {} ({}), recursive={}, path={}",
                    csi,
                    csi.kind(),
                    f.recursive,
                    f.path.as_ref().map_or(0, |p| p.vias().len())
                ),
                Err(issue) => format!("findService that a server answers with <{}>: {:?}", issue.kind, issue.unsupported_profiles),
            },
            Request::ListServices(_) => "listServices".to_owned(),
        });
    }
    if let Ok(r) = Response::decode(body, &Limits::MESSAGE) {
        return Ok(match r {
            Response::Found(f) => {
                let mut s = format!("findServiceResponse with {} mapping(s):", f.mappings.len());
                for m in &f.mappings {
                    match &m.body {
                        MappingBody::Provider(p) => s.push_str(&format!(
                            "\n      {} priority {} [{}] {} uri(s), {}",
                            p.id,
                            p.priority,
                            p.assurance.as_str(),
                            m.uris.len(),
                            if m.signature.is_some() { "signed" } else { "UNSIGNED" }
                        )),
                        MappingBody::NoProviders { reason, .. } => {
                            s.push_str(&format!("\n      exists, nothing for this sender ({})", reason.as_str()))
                        }
                    }
                }
                let vias: Vec<&str> = f.path.vias().iter().map(Name::as_str).collect();
                s.push_str(&format!("\n      path: {}", vias.join(" → ")));
                s
            }
            Response::Redirect(r) => format!(
                "redirect from {} to {} for {} (lifetime {} s, {} endpoint(s))",
                r.source,
                r.target,
                r.delegation.cover,
                r.delegation.lifetime,
                r.delegation.authorities.iter().map(|a| a.endpoints.len()).sum::<usize>()
            ),
            Response::Errors(e) => {
                let kinds: Vec<&str> = e.list.issues().iter().map(|i| i.kind.element()).collect();
                format!("errors from {}: {}", e.source, kinds.join(", "))
            }
            Response::Services(s) => format!("listServicesResponse: {} service(s)", s.services.len()),
        });
    }
    if let Ok(t) = RootTable::decode(body, &Limits::DOCUMENT) {
        return Ok(format!(
            "root table {} serial {} with {} delegation(s), {}",
            t.source,
            t.serial,
            t.delegations.len(),
            if t.signature.is_some() { "signed" } else { "unsigned" }
        ));
    }
    if let Ok(f) = FeedFrame::decode(body) {
        return Ok(match f {
            FeedFrame::Change(c) => format!("feed change #{}: {} ({:?})", c.seq, c.op.as_str(), c.subject),
            FeedFrame::Heartbeat { seq, .. } => format!("feed heartbeat at #{seq}"),
            FeedFrame::Resync { seq, reason } => format!("feed resync from #{seq}: {reason}"),
        });
    }
    if let Ok(p) = ProvisionResult::decode(body) {
        return Ok(format!("provisioning result: seq {}, {} changed", p.seq, p.affected));
    }
    if let Ok(p) = Provision::decode(body, &Limits::MESSAGE) {
        return Ok(format!("provisioning request: {}", p.label()));
    }
    // Nothing accepted it: report the most specific refusal (one that got
    // past the root element), as the server for that document kind would.
    let errors = [
        Request::decode(body, &Limits::MESSAGE).err(),
        Response::decode(body, &Limits::MESSAGE).err(),
        RootTable::decode(body, &Limits::DOCUMENT).err(),
        FeedFrame::decode(body).err(),
        ProvisionResult::decode(body).err(),
        Provision::decode(body, &Limits::MESSAGE).err(),
    ];
    let mut all = errors.into_iter().flatten();
    let first = all.next();
    match all.find(|e| !matches!(e.problem(), Problem::UnknownRoot | Problem::Namespace)) {
        Some(e) => Err(e),
        None => Err(first.unwrap_or_else(unreachable_error)),
    }
}

fn unreachable_error() -> DecodeError {
    // Every decoder refused, so `first` is always set; keep main panic-free.
    match Request::decode(b"", &Limits::MESSAGE) {
        Err(e) => e,
        Ok(_) => std::process::exit(70),
    }
}

fn main() {
    csi::warm_up();
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let files = if args.is_empty() {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("samples");
        let mut v = Vec::new();
        for sub in ["valid/lost", "valid/sp", "invalid/request", "invalid/response", "invalid/sp"] {
            let mut f: Vec<PathBuf> = std::fs::read_dir(root.join(sub)).into_iter().flatten().flatten().map(|e| e.path()).collect();
            f.sort();
            v.extend(f);
        }
        v
    } else {
        args
    };
    let (mut ok, mut refused) = (0, 0);
    for f in &files {
        let body = match std::fs::read(f) {
            Ok(b) => b,
            Err(e) => {
                eprintln!("{}: cannot read: {e}", f.display());
                std::process::exit(66);
            }
        };
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        match describe(&body) {
            Ok(s) => {
                ok += 1;
                println!("✔ {name}\n      {s}");
            }
            Err(e) => {
                refused += 1;
                println!("✘ {name}\n      <{}> ({}): {}", e.kind(), e.problem().label(), e.message());
            }
        }
    }
    println!("\n{ok} decoded, {refused} refused");
}
