//! (`support::doc_blocks`) The commands the docs tell people to type: every line of the shell
//! blocks (fenced with no language, `sh`, `bash`, `shell` or `console`) of README.md and
//! docs/*.md, plus `HASERF_OPTS="…"` in systemd/haserf.default (as `haserf agent …`).
//! Continuation lines are joined, `$ ` prompts and `# comments` dropped, pipelines and `&&`
//! lists split into one command each, leading `VAR=value` assignments and `sudo` skipped,
//! `$(haserf keygen)` / `$(serf keygen)` replaced by a real key. Blocks fenced `text` are
//! usage summaries, not commands. Shared by `src/cli.rs`'s tests (every `haserf` command
//! parses) and tests/docs_commands.rs (every other program exists and takes its flags).

use std::path::{Path, PathBuf};

/// A key `haserf keygen` could print (32 bytes), for `$(haserf keygen)` in the docs.
pub const KEY: &str = "5jI2ONW3QhD7nHxpGS3UeKyBJ4K7wJ4tjxt1OdCBDnY=";

/// One command as written in the docs.
#[derive(Debug, Clone)]
pub struct DocCommand {
    /// `FILE:LINE` where it starts.
    pub at: String,
    /// The words, program first.
    pub words: Vec<String>,
    /// The line as written (joined).
    pub text: String,
}

/// The documentation files that hold commands.
pub fn doc_files(root: &Path) -> Vec<PathBuf> {
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    docs.retain(|p| p.extension().is_some_and(|e| e == "md"));
    docs.sort();
    files.extend(docs);
    files
}

/// Splits `line` at `sep` strings outside single and double quotes.
fn split_outside_quotes<'a>(line: &'a str, seps: &[&str]) -> Vec<&'a str> {
    let mut out = Vec::new();
    let (mut quote, mut start, mut skip_to) = (None, 0, 0);
    for (i, c) in line.char_indices() {
        if i < skip_to {
            continue;
        }
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == '\'' || c == '"' => quote = Some(c),
            None => {
                if let Some(sep) = seps.iter().find(|s| line[i..].starts_with(**s)) {
                    out.push(&line[start..i]);
                    skip_to = i + sep.len();
                    start = skip_to;
                }
            }
        }
    }
    out.push(&line[start..]);
    out
}

fn commands_of_line(at: &str, line: &str, out: &mut Vec<DocCommand>) {
    let line = line
        .replace("$(haserf keygen)", KEY)
        .replace("$(serf keygen)", KEY);
    let line = split_outside_quotes(&line, &[" #"])[0].trim().to_string();
    for part in split_outside_quotes(&line, &["&&", "||", "|", ";"]) {
        let Ok(mut words) = shell_words::split(part.trim()) else {
            continue;
        };
        while words
            .first()
            .is_some_and(|w| w == "sudo" || (w.contains('=') && !w.starts_with('-')))
        {
            if let Some(w) = words.first().filter(|w| w.starts_with("HASERF_OPTS=")) {
                // `HASERF_OPTS="…"` is the agent's command line under systemd
                let opts = w.trim_start_matches("HASERF_OPTS=").to_string();
                let mut agent = vec!["haserf".to_string(), "agent".to_string()];
                agent.extend(shell_words::split(&opts).unwrap_or_default());
                out.push(DocCommand {
                    at: at.to_string(),
                    words: agent,
                    text: line.clone(),
                });
            }
            words.remove(0);
        }
        if !words.is_empty() {
            out.push(DocCommand {
                at: at.to_string(),
                words,
                text: line.clone(),
            });
        }
    }
}

/// Every command of one markdown text (`name` is for `at`).
pub fn commands_in_markdown(name: &str, text: &str) -> Vec<DocCommand> {
    let mut out = Vec::new();
    let mut in_block: Option<bool> = None; // Some(checked?)
    let mut pending = String::new();
    let mut pending_at = String::new();
    for (n, raw) in text.lines().enumerate() {
        let trimmed = raw.trim();
        if let Some(info) = trimmed.strip_prefix("```") {
            in_block = match in_block {
                Some(_) => None,
                None => Some(matches!(
                    info.trim(),
                    "" | "sh" | "bash" | "shell" | "console"
                )),
            };
            pending.clear();
            continue;
        }
        if in_block != Some(true) {
            continue;
        }
        let line = trimmed.strip_prefix("$ ").unwrap_or(trimmed);
        if pending.is_empty() {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            pending_at = format!("{name}:{}", n + 1);
        }
        if let Some(head) = line.strip_suffix('\\') {
            pending.push_str(head);
            pending.push(' ');
            continue;
        }
        pending.push_str(line);
        commands_of_line(&pending_at, &pending, &mut out);
        pending.clear();
    }
    out
}

/// Every command of the docs (README.md, docs/*.md) and of systemd/haserf.default.
pub fn doc_commands(root: &Path) -> Vec<DocCommand> {
    let mut out = Vec::new();
    for f in doc_files(root) {
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let name = f.strip_prefix(root).unwrap_or(&f).display().to_string();
        out.extend(commands_in_markdown(&name, &text));
    }
    let default = root.join("systemd/haserf.default");
    let text = std::fs::read_to_string(&default).unwrap_or_default();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with("HASERF_OPTS=") {
            commands_of_line(&format!("systemd/haserf.default:{}", n + 1), line, &mut out);
        }
    }
    out
}

/// True when the words are a usage sketch rather than a command (`…`, `...`, `<x>`, `[x]`).
pub fn is_sketch(c: &DocCommand) -> bool {
    c.words
        .iter()
        .any(|w| w.contains('…') || w == "..." || w.starts_with('<') || w.starts_with('['))
}
