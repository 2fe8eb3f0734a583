//! `trim-exports IN OUT --keep NAME[,NAME...]`: copies a proxy-wasm module, keeping only
//! the `proxy_on_*` callbacks named in `--keep`, and removes the code only they reached.
//!
//! The Rust SDK exports every callback of the ABI, and Envoy calls each one it finds:
//! response headers, log and done for every request, although jwt-guard does nothing
//! there. Envoy skips a callback the module does not export, so each one dropped saves
//! a call into V8 per request (README, Performance). Exports that are not callbacks
//! (`memory`, `_initialize`, `proxy_abi_version_*`) are always kept.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::ExitCode;

use walrus::{ExportItem, Module};

const CALLBACK_PREFIX: &str = "proxy_on_";

/// What the command line asks for.
#[derive(Debug, PartialEq)]
struct Args {
    input: PathBuf,
    output: PathBuf,
    keep: BTreeSet<String>,
}

fn parse_args(args: &[String]) -> Result<Args, String> {
    let usage = "usage: trim-exports IN OUT --keep proxy_on_a,proxy_on_b,...";
    match args {
        [input, output, flag, keep] if flag == "--keep" => {
            let keep: BTreeSet<String> = keep
                .split(',')
                .map(str::trim)
                .filter(|name| !name.is_empty())
                .map(String::from)
                .collect();
            if let Some(bad) = keep.iter().find(|n| !n.starts_with(CALLBACK_PREFIX)) {
                return Err(format!(
                    "--keep: '{bad}' is not a {CALLBACK_PREFIX}* callback"
                ));
            }
            Ok(Args {
                input: input.into(),
                output: output.into(),
                keep,
            })
        }
        _ => Err(usage.to_string()),
    }
}

/// Drops the callbacks not in `keep` and the code only they used. Returns the names
/// dropped. Fails if a name in `keep` is not exported or is not a function, so a
/// misspelt list cannot silently remove a callback the filter needs.
fn trim(module: &mut Module, keep: &BTreeSet<String>) -> Result<Vec<String>, String> {
    let mut kept = BTreeSet::new();
    let mut dropped = Vec::new();
    for export in module.exports.iter() {
        if !export.name.starts_with(CALLBACK_PREFIX) {
            continue;
        }
        if keep.contains(&export.name) {
            if !matches!(export.item, ExportItem::Function(_)) {
                return Err(format!("export '{}' is not a function", export.name));
            }
            kept.insert(export.name.clone());
        } else {
            dropped.push((export.id(), export.name.clone()));
        }
    }
    if let Some(missing) = keep.difference(&kept).next() {
        return Err(format!("--keep: the module exports no '{missing}'"));
    }
    for (id, _) in &dropped {
        module.exports.delete(*id);
    }
    walrus::passes::gc::run(module);
    Ok(dropped.into_iter().map(|(_, name)| name).collect())
}

fn run(args: &Args) -> Result<(), String> {
    let mut module = Module::from_file(&args.input)
        .map_err(|e| format!("cannot read {}: {e}", args.input.display()))?;
    let dropped = trim(&mut module, &args.keep)?;
    // The input was stripped (release profile); stay that way.
    module.producers.clear();
    module
        .emit_wasm_file(&args.output)
        .map_err(|e| format!("cannot write {}: {e}", args.output.display()))?;
    println!(
        "trim-exports: kept {}; dropped {}",
        args.keep.iter().cloned().collect::<Vec<_>>().join(" "),
        dropped.join(" ")
    );
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match parse_args(&args).and_then(|args| run(&args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("trim-exports: {error}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use walrus::{FunctionBuilder, ModuleConfig, ValType};

    /// A module exporting `memory`, `proxy_abi_version_0_2_1` and one function per
    /// callback name, each returning a distinct constant.
    fn module_with(callbacks: &[&str]) -> Module {
        let mut module = Module::with_config(ModuleConfig::new());
        let memory = module.memories.add_local(false, false, 1, None, None);
        module.exports.add("memory", memory);
        let abi =
            FunctionBuilder::new(&mut module.types, &[], &[]).finish(vec![], &mut module.funcs);
        module.exports.add("proxy_abi_version_0_2_1", abi);
        for (i, name) in callbacks.iter().enumerate() {
            let mut f = FunctionBuilder::new(&mut module.types, &[], &[ValType::I32]);
            f.func_body().i32_const(i as i32);
            let id = f.finish(vec![], &mut module.funcs);
            module.exports.add(name, id);
        }
        module
    }

    fn names(module: &Module) -> Vec<String> {
        let mut names: Vec<String> = module.exports.iter().map(|e| e.name.clone()).collect();
        names.sort();
        names
    }

    fn keep(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|n| n.to_string()).collect()
    }

    #[test]
    fn trim_drops_unlisted_callbacks_and_keeps_the_rest() {
        let mut module = module_with(&["proxy_on_log", "proxy_on_request_headers"]);
        let dropped = trim(&mut module, &keep(&["proxy_on_request_headers"])).unwrap();
        assert_eq!(dropped, ["proxy_on_log"]);
        assert_eq!(
            names(&module),
            [
                "memory",
                "proxy_abi_version_0_2_1",
                "proxy_on_request_headers"
            ]
        );
    }

    #[test]
    fn trim_removes_the_code_of_dropped_callbacks() {
        let mut module = module_with(&["proxy_on_log", "proxy_on_done", "proxy_on_tick"]);
        let before = module.funcs.iter().count();
        trim(&mut module, &keep(&["proxy_on_tick"])).unwrap();
        assert_eq!(module.funcs.iter().count(), before - 2);
    }

    #[test]
    fn trim_refuses_a_kept_name_the_module_lacks() {
        let mut module = module_with(&["proxy_on_request_headers"]);
        let error = trim(&mut module, &keep(&["proxy_on_request_header"])).unwrap_err();
        assert!(error.contains("proxy_on_request_header'"), "{error}");
        assert_eq!(names(&module).len(), 3, "nothing removed after an error");
    }

    #[test]
    fn trimmed_module_round_trips_through_the_binary_format() {
        let mut module = module_with(&["proxy_on_log", "proxy_on_configure"]);
        trim(&mut module, &keep(&["proxy_on_configure"])).unwrap();
        let bytes = module.emit_wasm();
        let reread = Module::from_buffer(&bytes).unwrap();
        assert_eq!(
            names(&reread),
            ["memory", "proxy_abi_version_0_2_1", "proxy_on_configure"]
        );
    }

    #[test]
    fn args_need_the_keep_list_of_callbacks() {
        let args = |v: &[&str]| parse_args(&v.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        let parsed = args(&[
            "in.wasm",
            "out.wasm",
            "--keep",
            "proxy_on_tick, proxy_on_delete",
        ]);
        assert_eq!(
            parsed.unwrap().keep,
            keep(&["proxy_on_delete", "proxy_on_tick"])
        );
        assert!(args(&["in.wasm", "out.wasm"]).is_err());
        let error = args(&["in.wasm", "out.wasm", "--keep", "memory"]).unwrap_err();
        assert!(error.contains("'memory'"), "{error}");
    }
}
