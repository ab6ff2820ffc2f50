//! The committed man pages and shell completions are what `cargo run --example cfsctl-gen`
//! writes from the current CLI, every page renders, and the completions load (docs/cli.md).

mod common;

#[allow(dead_code)] // its `main` is the example's entry point, not used here
#[path = "../tools/cfsctl-gen.rs"]
mod cfsctl_gen;

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// The generated files under `dir` (pages only, not the hand-written ones), by name.
fn generated(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| dir.ends_with("completions") || cfsctl_gen::is_generated_page(p))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn committed_man_pages_and_completions_are_up_to_date() {
    let tmp = tempfile::tempdir().unwrap();
    let (man, completions) = (tmp.path().join("man"), tmp.path().join("completions"));
    cfsctl_gen::generate(&man, &completions).unwrap();
    let fix = "run `cargo run --example cfsctl-gen` and commit man/ and completions/";
    for (fresh, committed) in [
        (man, root().join("man")),
        (completions, root().join("completions")),
    ] {
        assert_eq!(
            generated(&fresh),
            generated(&committed),
            "{}: files differ; {fix}",
            committed.display()
        );
        for name in generated(&fresh) {
            let (a, b) = (fresh.join(&name), committed.join(&name));
            assert!(
                std::fs::read(&a).unwrap() == std::fs::read(&b).unwrap(),
                "{} is out of date; {fix}",
                b.display()
            );
        }
    }
}

#[test]
fn there_is_a_page_for_every_subcommand() {
    fn walk(cmd: &clap::Command, prefix: &str, out: &mut Vec<String>) {
        let name = format!("{prefix}{}", cmd.get_name());
        out.push(format!("{name}.1"));
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{name}-"), out);
        }
    }
    let mut expected = Vec::new();
    walk(&cfsctl::cli::command(), "", &mut expected);
    expected.sort();
    assert!(expected.contains(&"cfsctl-oci-pull.1".to_string()));
    assert_eq!(generated(&root().join("man")), expected);
}

/// Every page renders with man(1), without warnings from groff.
#[test]
fn every_man_page_renders() {
    let Some(man) = common::find_tool("MAN", "man", &[]) else {
        return;
    };
    let dir = root().join("man");
    let mut pages: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    pages.sort();
    assert!(pages.iter().any(|p| p.ends_with("cfs-setup-root.8")));
    for page in pages {
        let out = Command::new(&man)
            .arg("-l")
            .arg("--warnings")
            .arg(&page)
            .env("MANPAGER", "cat")
            .env("MANWIDTH", "80")
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout).to_lowercase();
        let stem = page.file_stem().unwrap().to_string_lossy().to_lowercase();
        assert!(
            out.status.success(),
            "man {}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "man {}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.contains(&stem) && text.contains("name") && text.contains("synopsis"),
            "man {} rendered no page:\n{text}",
            page.display()
        );
    }
}

#[test]
fn bash_completion_loads_and_completes() {
    let file = root().join("completions/cfsctl.bash");
    // `complete -p` proves the function is registered; calling it proves it completes.
    let script = format!(
        "source {}; complete -p cfsctl; COMP_WORDS=(cfsctl oci p); COMP_CWORD=2; \
         COMP_LINE='cfsctl oci p'; COMP_POINT=12; _cfsctl cfsctl p oci; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        file.display()
    );
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("-F _cfsctl cfsctl"), "{text}");
    assert!(text.lines().any(|l| l == "pull"), "{text}");
}

#[test]
fn zsh_and_fish_completions_load() {
    for (shell, file, script) in [
        (
            "zsh",
            "_cfsctl",
            "autoload -U compinit && compinit -u && source {} && print -r -- ${+functions[_cfsctl]}",
        ),
        (
            "fish",
            "cfsctl.fish",
            "source {} && complete -C 'cfsctl oci p'",
        ),
    ] {
        let Some(bin) = common::find_tool(&shell.to_uppercase(), shell, &[]) else {
            continue;
        };
        let path = root().join("completions").join(file);
        let script = script.replace("{}", &path.display().to_string());
        let out = Command::new(bin).arg("-c").arg(&script).output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{shell}: {}{text}",
            String::from_utf8_lossy(&out.stderr)
        );
        let expected = if shell == "zsh" { "1" } else { "pull" };
        assert!(
            text.lines().any(|l| l.starts_with(expected)),
            "{shell}: {text}"
        );
    }
}
