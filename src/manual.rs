//! `hubworker completions SHELL` and `hubworker man`: generated from the clap definition the
//! binary parses with, so they cannot drift from it. The caller passes that definition in
//! (this module does not import the command line).

use std::io::Write;

/// Writes the completion script for `shell` for the command `cmd`.
pub(crate) fn completions(
    shell: clap_complete::Shell,
    mut cmd: clap::Command,
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let name = cmd.get_name().to_owned();
    clap_complete::generate(shell, &mut cmd, name, out);
    out.flush()
}

/// Writes the man page (roff, section 1) of `cmd`: the top-level page, then one section per
/// subcommand with its options, so `man hubworker` covers the whole command line.
pub(crate) fn man_page(cmd: clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let cmd = cmd.disable_help_subcommand(true);
    let man = clap_mangen::Man::new(cmd.clone());
    man.render_title(out)?;
    man.render_name_section(out)?;
    man.render_synopsis_section(out)?;
    man.render_description_section(out)?;
    man.render_options_section(out)?;
    man.render_subcommands_section(out)?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand(cmd.get_name(), sub, out)?;
    }
    man.render_version_section(out)?;
    out.flush()
}

/// One subcommand (and its own subcommands) as a `.SH` section: its description, then its
/// synopsis and options as subsections.
fn write_subcommand(parent: &str, sub: &clap::Command, out: &mut dyn Write) -> std::io::Result<()> {
    let full = format!("{parent} {}", sub.get_name());
    writeln!(out, ".SH \"{}\"", full.to_uppercase())?;
    if let Some(about) = sub.get_long_about().or_else(|| sub.get_about()) {
        writeln!(out, ".PP\n{}", roff_text(&about.to_string()))?;
    }
    let page = clap_mangen::Man::new(sub.clone().bin_name(full.clone()));
    let mut body = Vec::new();
    page.render_synopsis_section(&mut body)?;
    page.render_options_section(&mut body)?;
    // The page's own sections become subsections of this one.
    for line in String::from_utf8_lossy(&body).lines() {
        match line.strip_prefix(".SH ") {
            Some(title) => writeln!(out, ".SS {title}")?,
            None => writeln!(out, "{line}")?,
        }
    }
    for nested in sub.get_subcommands().filter(|s| !s.is_hide_set()) {
        write_subcommand(&full, nested, out)?;
    }
    Ok(())
}

/// Escapes text for roff: backslashes and dashes, and a leading dot or quote.
fn roff_text(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\\\").replace('-', "\\-");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
