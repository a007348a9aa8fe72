//! `djauth createsuperuser` and `djauth changepassword`: Django 5.2's management commands of
//! the same names (`django/contrib/auth/management/commands/`), with their prompts,
//! validation, messages and exit codes.
//!
//! What a terminal shows is Django's, byte for byte:
//! * `input()` prompts go to stderr when stdin and stdout are terminals (CPython's
//!   `PyOS_StdioReadline`), to stdout otherwise; passwords are read like `getpass.getpass`
//!   (on `/dev/tty` in canonical mode with echo off, `TCSAFLUSH`, a newline written after).
//! * Messages Django writes with `self.stderr.write` (and `CommandError: …`) are styled with
//!   the `ERROR` role of `DJANGO_COLORS` (bold red by default) when stdout and stderr are
//!   both terminals, unless `--no-color`.
//! * Ctrl-C restores the terminal and ends with "\nOperation cancelled." and exit 1.
//!
//! The user model is `auth.User` (username: `UnicodeUsernameValidator`, 150 characters;
//! email: `EmailValidator`, 254 characters, may be blank) or a swapped model described by
//! `USERNAME_FIELD` / `EMAIL_FIELD` (see [`ModelFields`]).

use super::db::connect;
use super::{CmdResult, Failure};
use crate::config::Settings;
use crate::db::users::{NewUser, User, UserModel};
use crate::db::DbConnection;
#[cfg(test)]
use crate::formats::fields::is_ipv46;
pub use crate::formats::fields::{is_valid_email, normalize_email, normalize_username};
use crate::formats::hashers::make_unusable_password;
use crate::formats::validators::{
    auth_user_verbose_name, py_is_word_char, py_lower, py_strip, validate_password, Validator,
};
use crate::formats::DjangoVersion;
use clap::{ArgAction, Args};
use std::io::{IsTerminal, Write};
use unicode_normalization::UnicodeNormalization;

/// Options every Django management command has (those that matter here).
#[derive(Args, Debug)]
pub struct CommonArgs {
    /// Specifies the database to use (djauth has one: DATABASE_URL).
    #[arg(long, default_value = "default", value_parser = ["default"])]
    database: String,
    /// Verbosity level; 0=minimal output, 1=normal output, 2=verbose output, 3=very verbose output.
    #[arg(short, long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(0..=3))]
    verbosity: u8,
    /// Don't colorize the command output.
    #[arg(long)]
    no_color: bool,
    /// Force colorization of the command output (as in Django, it does not style stderr).
    #[arg(long)]
    force_color: bool,
    /// Skip system checks (accepted for compatibility; djauth runs none here).
    #[arg(long)]
    skip_checks: bool,
}

#[derive(Args, Debug)]
pub struct CreatesuperuserArgs {
    /// Specifies the login for the superuser (the USERNAME_FIELD; when USERNAME_FIELD is
    /// "email", give it with --email).
    #[arg(long)]
    username: Option<String>,
    /// Specifies the email for the superuser (EMAIL_FIELD, a REQUIRED_FIELD of auth.User).
    #[arg(long)]
    email: Option<String>,
    /// Do not prompt for input of any kind: the username comes from --username (or
    /// DJANGO_SUPERUSER_USERNAME), the email from --email (or DJANGO_SUPERUSER_EMAIL), the
    /// password from DJANGO_SUPERUSER_PASSWORD; without it the superuser gets an unusable
    /// password and cannot log in until given one.
    #[arg(long = "noinput", visible_alias = "no-input", action = ArgAction::SetFalse)]
    interactive: bool,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Args, Debug)]
pub struct ChangepasswordArgs {
    /// Username to change password for; by default, it's the current username.
    username: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

// ---------------------------------------------------------------------------------------
// Fields: Django's model field `clean()` for the user model's fields
// ---------------------------------------------------------------------------------------

/// Which validators a field runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// `AbstractUser.username`: `UnicodeUsernameValidator`, `max_length=150`.
    Username,
    /// `EmailField`: `EmailValidator`, `max_length=254`.
    Email,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub name: String,
    pub verbose_name: String,
    pub kind: FieldKind,
    /// `blank=True`: an empty value is accepted without running the validators.
    pub blank: bool,
}

pub const USERNAME_INVALID: &str =
    "Enter a valid username. This value may contain only letters, numbers, and @/./+/-/_ characters.";
pub const EMAIL_INVALID: &str = "Enter a valid email address.";
pub const BLANK: &str = "This field cannot be blank.";

/// `MaxLengthValidator`'s message (ngettext on the limit).
pub fn max_length_message(limit: usize, has: usize) -> String {
    let unit = if limit == 1 {
        "character"
    } else {
        "characters"
    };
    format!("Ensure this value has at most {limit} {unit} (it has {has}).")
}

/// `UnicodeUsernameValidator`: `^[\w.@+-]+\Z` with Python's Unicode `\w`.
pub fn is_valid_username(value: &str) -> bool {
    !value.is_empty()
        && value
            .chars()
            .all(|c| py_is_word_char(c) || matches!(c, '.' | '@' | '+' | '-'))
}

impl Field {
    fn max_length(&self) -> usize {
        match self.kind {
            FieldKind::Username => 150,
            FieldKind::Email => 254,
        }
    }

    /// `field.run_validators(value)`: every validator's message, in order (none for an
    /// empty value).
    pub fn run_validators(&self, value: &str) -> Vec<String> {
        let mut errors = vec![];
        if value.is_empty() {
            return errors;
        }
        let ok = match self.kind {
            FieldKind::Username => is_valid_username(value),
            FieldKind::Email => is_valid_email(value),
        };
        if !ok {
            errors.push(
                match self.kind {
                    FieldKind::Username => USERNAME_INVALID,
                    FieldKind::Email => EMAIL_INVALID,
                }
                .to_owned(),
            );
        }
        let len = value.chars().count();
        if len > self.max_length() {
            errors.push(max_length_message(self.max_length(), len));
        }
        errors
    }

    /// `field.clean(value, None)` of a model `CharField`/`EmailField`: no stripping, the
    /// blank check, then the validators. `Err` holds `ValidationError.messages`.
    pub fn clean(&self, value: &str) -> Result<String, Vec<String>> {
        if !self.blank && value.is_empty() {
            return Err(vec![BLANK.to_owned()]);
        }
        let errors = self.run_validators(value);
        if errors.is_empty() {
            Ok(value.to_owned())
        } else {
            Err(errors)
        }
    }

    /// `capfirst(verbose_name)`.
    pub fn capfirst_verbose_name(&self) -> String {
        capfirst(&self.verbose_name)
    }
}

/// `django.utils.text.capfirst`.
pub fn capfirst(s: &str) -> String {
    let mut chars = s.chars();
    match chars.next() {
        Some(c) => c.to_uppercase().chain(chars).collect(),
        None => String::new(),
    }
}

/// The user model as createsuperuser sees it. For `auth.User`: `username` (required) and
/// `REQUIRED_FIELDS = ["email"]` (blank allowed). For a swapped model djauth knows only
/// `USERNAME_FIELD` and `EMAIL_FIELD`: the username field validates as an email address when
/// it is `EMAIL_FIELD` (then there are no other required fields), otherwise as
/// `AbstractUser.username`, with `EMAIL_FIELD` as the one required field.
#[derive(Debug, Clone)]
pub struct ModelFields {
    pub username: Field,
    pub required: Vec<Field>,
    /// `AUTH_USER_MODEL != "auth.User"`: no default username is offered.
    pub swapped: bool,
}

fn verbose_name(name: &str) -> String {
    auth_user_verbose_name(name)
        .map(str::to_owned)
        .unwrap_or_else(|| name.replace('_', " "))
}

impl ModelFields {
    pub fn from_settings(settings: &Settings) -> Self {
        let username_field = settings.username_field.as_str();
        let email_field = settings.email_field.as_str();
        let username_is_email = username_field == email_field;
        let username = Field {
            name: username_field.to_owned(),
            verbose_name: verbose_name(username_field),
            kind: if username_is_email {
                FieldKind::Email
            } else {
                FieldKind::Username
            },
            blank: false,
        };
        let required = if username_is_email {
            vec![]
        } else {
            vec![Field {
                name: email_field.to_owned(),
                verbose_name: verbose_name(email_field),
                kind: FieldKind::Email,
                blank: true,
            }]
        };
        ModelFields {
            username,
            required,
            swapped: settings.auth_user_model != "auth.User",
        }
    }
}

// EmailValidator, normalize_email and normalize_username live in crate::formats::fields.

/// `getpass.getuser()`: the first non-empty of LOGNAME, USER, LNAME, USERNAME, else the
/// password database's name for the real user id; `None` when there is none.
pub fn system_username(env: impl Fn(&str) -> Option<String>) -> Option<String> {
    for name in ["LOGNAME", "USER", "LNAME", "USERNAME"] {
        if let Some(v) = env(name).filter(|v| !v.is_empty()) {
            return Some(v);
        }
    }
    passwd_name()
}

fn passwd_name() -> Option<String> {
    let mut buf = vec![0 as libc::c_char; 16384];
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    // SAFETY: getpwuid_r writes into our buffers only; the name is copied out before they go.
    let rc = unsafe {
        libc::getpwuid_r(
            libc::getuid(),
            &mut pwd,
            buf.as_mut_ptr(),
            buf.len(),
            &mut result,
        )
    };
    if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
        return None;
    }
    let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
    name.to_str().ok().map(str::to_owned)
}

/// The pure part of `get_default_username`: NFKD, ASCII only, spaces removed, lowercased;
/// empty when the username field's validators refuse it.
pub fn default_username_candidate(system_username: &str) -> String {
    let folded: String = system_username
        .nfkd()
        .filter(|c| c.is_ascii() && *c != ' ')
        .collect::<String>()
        .to_ascii_lowercase();
    let field = Field {
        name: "username".into(),
        verbose_name: "username".into(),
        kind: FieldKind::Username,
        blank: false,
    };
    if field.run_validators(&folded).is_empty() {
        folded
    } else {
        String::new()
    }
}

// ---------------------------------------------------------------------------------------
// Terminal I/O as Django's BaseCommand, input() and getpass do it
// ---------------------------------------------------------------------------------------

/// `DJANGO_COLORS` → the SGR codes of the `ERROR` role (`termcolors.parse_color_setting`),
/// or `None` when no role has a colour (Django then styles nothing).
pub fn error_role_codes(django_colors: &str) -> Option<String> {
    const COLORS: [&str; 8] = [
        "black", "red", "green", "yellow", "blue", "magenta", "cyan", "white",
    ];
    const OPTS: [(&str, &str); 5] = [
        ("bold", "1"),
        ("underscore", "4"),
        ("blink", "5"),
        ("reverse", "7"),
        ("conceal", "8"),
    ];
    // Roles of the nocolor palette; a definition for any of them makes the palette coloured.
    const ROLES: [&str; 17] = [
        "ERROR",
        "SUCCESS",
        "WARNING",
        "NOTICE",
        "SQL_FIELD",
        "SQL_COLTYPE",
        "SQL_KEYWORD",
        "SQL_TABLE",
        "HTTP_INFO",
        "HTTP_SUCCESS",
        "HTTP_REDIRECT",
        "HTTP_NOT_MODIFIED",
        "HTTP_BAD_REQUEST",
        "HTTP_NOT_FOUND",
        "HTTP_SERVER_ERROR",
        "MIGRATE_HEADING",
        "MIGRATE_LABEL",
    ];
    let dark_error = || Some(("red".to_owned(), None, vec!["bold".to_owned()]));
    type Def = Option<(String, Option<String>, Vec<String>)>;
    // (fg, bg, opts) of ERROR; `any` = some role has a definition.
    let (mut error, mut any): (Def, bool) = (None, false);
    if django_colors.is_empty() {
        (error, any) = (dark_error(), true);
    } else {
        for part in django_colors.to_lowercase().split(';') {
            if part == "dark" || part == "light" {
                (error, any) = (dark_error(), true);
            } else if part == "nocolor" {
                // Every role back to {}.
                (error, any) = (None, false);
            } else if part.contains('=') {
                let mut halves = part.split('=');
                let (Some(role), Some(instructions), None) =
                    (halves.next(), halves.next(), halves.next())
                else {
                    continue; // Python raises ValueError here; ignore the part.
                };
                let role = role.to_uppercase();
                let mut styles: Vec<&str> = instructions.split(',').collect();
                let colors: Vec<&str> = styles.remove(0).split('/').collect();
                let def_fg = Some(colors[0]).filter(|c| COLORS.contains(c));
                let def_bg = colors.get(1).copied().filter(|c| COLORS.contains(c));
                let opts: Vec<String> = styles
                    .iter()
                    .rev()
                    .filter(|s| OPTS.iter().any(|(n, _)| n == *s))
                    .map(|s| s.to_string())
                    .collect();
                let defined = def_fg.is_some() || def_bg.is_some() || !opts.is_empty();
                if ROLES.contains(&role.as_str()) && defined {
                    any = true;
                    if role == "ERROR" {
                        error = Some((
                            def_fg.unwrap_or_default().to_owned(),
                            def_bg.map(str::to_owned),
                            opts,
                        ));
                    }
                }
            }
        }
    }
    if !any {
        return None;
    }
    let mut codes: Vec<String> = vec![];
    if let Some((fg, bg, opts)) = error {
        if let Some(i) = COLORS.iter().position(|c| *c == fg) {
            codes.push(format!("3{i}"));
        }
        if let Some(i) = bg.and_then(|bg| COLORS.iter().position(|c| *c == bg)) {
            codes.push(format!("4{i}"));
        }
        for o in opts {
            if let Some((_, code)) = OPTS.iter().find(|(n, _)| *n == o) {
                codes.push((*code).to_owned());
            }
        }
    }
    Some(codes.join(";"))
}

/// `OutputWrapper.write` with the `ERROR` style: the ending is added, then styled.
pub fn styled_error(msg: &str, codes: Option<&str>) -> String {
    let mut text = msg.to_owned();
    if !text.ends_with('\n') {
        text.push('\n');
    }
    match codes {
        Some(codes) => format!("\x1b[{codes}m{text}\x1b[0m"),
        None => text,
    }
}

/// How a prompt ended without an answer.
#[derive(Debug)]
enum Stop {
    /// Ctrl-D / end of input (Django: EOFError).
    Eof,
    /// Unreadable input.
    Io(String),
}

/// What ends a command early.
enum Exit {
    /// `CommandError`: "CommandError: <msg>" on stderr, exit 1.
    Command(String),
    /// KeyboardInterrupt (and end of input): "\nOperation cancelled.", exit 1.
    Cancelled,
    /// djauth's own failures (database, settings).
    Failure(Failure),
}

impl From<Stop> for Exit {
    fn from(s: Stop) -> Self {
        match s {
            Stop::Eof => Exit::Cancelled,
            Stop::Io(e) => Exit::Failure(Failure::Refused(e)),
        }
    }
}

impl From<Failure> for Exit {
    fn from(f: Failure) -> Self {
        Exit::Failure(f)
    }
}

fn db_err(e: impl std::fmt::Display) -> Exit {
    Exit::Failure(Failure::Refused(e.to_string()))
}

struct Console {
    /// The ERROR style's SGR codes, when stderr is styled.
    error_codes: Option<String>,
    stdin_tty: bool,
    stdout_tty: bool,
}

impl Console {
    fn new(no_color: bool) -> Self {
        let stdout_tty = std::io::stdout().is_terminal();
        let stderr_tty = std::io::stderr().is_terminal();
        // color_style(): supports_color() is stdout.isatty(); the style reaches stderr only
        // when stderr is a terminal too (OutputWrapper.style_func).
        let error_codes = if stdout_tty && stderr_tty && !no_color {
            error_role_codes(&std::env::var("DJANGO_COLORS").unwrap_or_default())
        } else {
            None
        };
        let console = Console {
            error_codes,
            stdin_tty: std::io::stdin().is_terminal(),
            stdout_tty,
        };
        signals::install(
            styled_error("\nOperation cancelled.", console.error_codes.as_deref()).into_bytes(),
        );
        console
    }

    fn out(&self, msg: &str) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{msg}");
        let _ = out.flush();
    }

    fn err(&self, msg: &str) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(styled_error(msg, self.error_codes.as_deref()).as_bytes());
        let _ = err.flush();
    }

    /// `input(prompt)`.
    fn input(&self, prompt: &str) -> Result<String, Stop> {
        if self.stdin_tty && self.stdout_tty {
            let mut err = std::io::stderr().lock();
            let _ = err.write_all(prompt.as_bytes());
            let _ = err.flush();
        } else {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(prompt.as_bytes());
            let _ = out.flush();
        }
        let line = read_line_fd(0)?;
        let mut line = decode(line)?;
        if line.ends_with('\n') {
            line.pop();
        }
        Ok(line)
    }
}

/// Reads up to and including a newline, or to end of input; `Eof` when nothing was read.
fn read_line_fd(fd: libc::c_int) -> Result<Vec<u8>, Stop> {
    let mut line = vec![];
    loop {
        let mut b = 0u8;
        // SAFETY: reads one byte into a local.
        let n = unsafe { libc::read(fd, (&mut b as *mut u8).cast(), 1) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Stop::Io(format!("cannot read input: {e}")));
        }
        if n == 0 {
            if line.is_empty() {
                return Err(Stop::Eof);
            }
            return Ok(line);
        }
        line.push(b);
        if b == b'\n' {
            return Ok(line);
        }
    }
}

fn decode(bytes: Vec<u8>) -> Result<String, Stop> {
    String::from_utf8(bytes).map_err(|_| Stop::Io("the input is not valid UTF-8".into()))
}

fn write_fd(fd: libc::c_int, s: &str) {
    let mut b = s.as_bytes();
    while !b.is_empty() {
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd, b.as_ptr().cast(), b.len()) };
        if n <= 0 {
            if n < 0 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return;
        }
        b = &b[n as usize..];
    }
}

/// `getpass.getpass(prompt)` (`unix_getpass`): on the controlling terminal, else on stdin
/// when it is a terminal, else (with a warning) on stdin with echo.
fn getpass(prompt: &str) -> Result<String, Stop> {
    let path = c"/dev/tty";
    // SAFETY: plain open(2) of a NUL-terminated path.
    let tty = unsafe { libc::open(path.as_ptr(), libc::O_RDWR | libc::O_NOCTTY) };
    let (fd, out_fd) = if tty >= 0 { (tty, tty) } else { (0, 2) };
    let result = (|| {
        let mut old: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fills `old`.
        if unsafe { libc::tcgetattr(fd, &mut old) } != 0 {
            // fallback_getpass: echo cannot be turned off.
            write_fd(2, "Warning: Password input may be echoed.\n");
            write_fd(2, prompt);
            let line = read_line_fd(0)?;
            let mut line = decode(line)?;
            if line.ends_with('\n') {
                line.pop();
            }
            write_fd(2, "\n");
            return Ok(line);
        }
        let mut new = old;
        new.c_lflag &= !libc::ECHO;
        signals::remember_terminal(fd, old);
        // SAFETY: fd is a terminal (tcgetattr succeeded).
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &new) };
        write_fd(out_fd, prompt);
        let read = read_line_fd(fd);
        unsafe { libc::tcsetattr(fd, libc::TCSAFLUSH, &old) };
        signals::forget_terminal();
        let bytes = read?;
        // TextIOWrapper's universal newlines: the line ends at the first \r or \n.
        let end = bytes
            .iter()
            .position(|b| *b == b'\r' || *b == b'\n')
            .unwrap_or(bytes.len());
        let line = decode(bytes[..end].to_vec())?;
        write_fd(out_fd, "\n");
        Ok(line)
    })();
    if tty >= 0 {
        unsafe { libc::close(tty) };
    }
    result
}

/// SIGINT: what KeyboardInterrupt does in Django's commands, done in the handler itself
/// (restore the terminal, print the message, exit 1), so a blocked read needs no wake-up.
mod signals {
    use std::cell::UnsafeCell;
    use std::mem::MaybeUninit;
    use std::sync::atomic::{AtomicI32, Ordering};
    use std::sync::OnceLock;

    static MESSAGE: OnceLock<Vec<u8>> = OnceLock::new();
    static TERMINAL_FD: AtomicI32 = AtomicI32::new(-1);

    struct Saved(UnsafeCell<MaybeUninit<libc::termios>>);
    // SAFETY: written only while TERMINAL_FD is -1, read only while it is not.
    unsafe impl Sync for Saved {}
    static SAVED: Saved = Saved(UnsafeCell::new(MaybeUninit::uninit()));

    pub fn install(message: Vec<u8>) {
        let _ = MESSAGE.set(message);
        // SAFETY: installs an async-signal-safe handler (atomics, tcsetattr, write, _exit).
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(libc::SIGINT, &sa, std::ptr::null_mut());
        }
    }

    pub fn remember_terminal(fd: i32, old: libc::termios) {
        // SAFETY: TERMINAL_FD is -1, so the handler does not read SAVED now.
        unsafe { (*SAVED.0.get()).write(old) };
        TERMINAL_FD.store(fd, Ordering::Release);
    }

    pub fn forget_terminal() {
        TERMINAL_FD.store(-1, Ordering::Release);
    }

    extern "C" fn on_sigint(_: libc::c_int) {
        let fd = TERMINAL_FD.load(Ordering::Acquire);
        // SAFETY: tcsetattr, write and _exit are async-signal-safe; SAVED is initialised
        // whenever fd != -1.
        unsafe {
            if fd >= 0 {
                libc::tcsetattr(fd, libc::TCSAFLUSH, (*SAVED.0.get()).as_ptr());
            }
            if let Some(m) = MESSAGE.get() {
                libc::write(2, m.as_ptr().cast(), m.len());
            }
            libc::_exit(1);
        }
    }
}

// ---------------------------------------------------------------------------------------
// The commands
// ---------------------------------------------------------------------------------------

/// BaseCommand.execute's check, then the command; CommandError and KeyboardInterrupt are
/// reported as Django does (exit 1).
fn run_command(common: &CommonArgs, body: impl FnOnce(&Console) -> Result<(), Exit>) -> CmdResult {
    let _ = (&common.database, common.skip_checks);
    // Both flags: the CommandError is raised before --no-color unstyles stderr.
    let console = Console::new(common.no_color && !common.force_color);
    let outcome = if common.force_color && common.no_color {
        Err(Exit::Command(
            "The --no-color and --force-color options can't be used together.".into(),
        ))
    } else {
        body(&console)
    };
    match outcome {
        Ok(()) => Ok(()),
        Err(Exit::Failure(f)) => Err(f),
        Err(Exit::Command(msg)) => {
            console.err(&format!("CommandError: {msg}"));
            let _ = std::io::stdout().flush();
            std::process::exit(1)
        }
        Err(Exit::Cancelled) => {
            console.err("\nOperation cancelled.");
            let _ = std::io::stdout().flush();
            std::process::exit(1)
        }
    }
}

struct Db {
    conn: crate::db::PooledConn,
    model: UserModel,
}

impl Db {
    fn open(settings: &Settings) -> Result<Db, Exit> {
        let (mut conn, backend) = connect(settings)?;
        let model =
            UserModel::load(&mut conn, backend, &settings.user_model_settings()).map_err(db_err)?;
        Ok(Db { conn, model })
    }

    fn conn(&mut self) -> &mut DbConnection {
        &mut self.conn
    }

    fn get(&mut self, username: &str) -> Result<Option<User>, Exit> {
        let model = self.model.clone();
        model.get_by_username(self.conn(), username).map_err(db_err)
    }
}

/// The password validators' verdict: the messages, or `None` when it passes.
fn password_errors(
    validators: &[Validator],
    password: &str,
    attributes: &Vec<(String, String)>,
) -> Option<String> {
    validate_password(password, Some(attributes), validators)
        .err()
        .map(|errs| {
            errs.iter()
                .map(|e| e.message.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        })
}

/// `djauth createsuperuser`.
pub fn createsuperuser(args: CreatesuperuserArgs, settings: &Settings) -> CmdResult {
    let hashers = settings.hashers()?;
    let validators = settings.password_validators()?;
    let fields = ModelFields::from_settings(settings);
    // --<USERNAME_FIELD>: --email names the username when USERNAME_FIELD is the email.
    let (username_opt, email_opt) = if fields.required.is_empty() {
        if args.username.is_some() && fields.username.name != "username" {
            return Err(Failure::Config(format!(
                "unrecognized arguments: --username (USERNAME_FIELD is {:?}: use --{})",
                fields.username.name, fields.username.name
            )));
        }
        (args.email.clone().or(args.username.clone()), None)
    } else {
        (args.username.clone(), args.email.clone())
    };
    let verbosity = args.common.verbosity;
    let blank_allowed = settings.django_version()? >= DjangoVersion::V5_2;
    run_command(&args.common, |console| {
        let username_field = &fields.username;
        let verbose = username_field.verbose_name.clone();
        // Non-interactive runs and the not-a-TTY skip read no terminal.
        if args.interactive && !console.stdin_tty {
            console.out(
                "Superuser creation skipped due to not running in a TTY. You can run \
                 `manage.py createsuperuser` in your project to create one manually.",
            );
            return Ok(());
        }
        let mut db = Db::open(settings)?;
        // _validate_username
        let validate_username = |db: &mut Db, username: &str| -> Result<Option<String>, Exit> {
            if db.get(username)?.is_some() {
                return Ok(Some(format!("Error: That {verbose} is already taken.")));
            }
            if username.is_empty() {
                return Ok(Some(format!(
                    "{} cannot be blank.",
                    username_field.capfirst_verbose_name()
                )));
            }
            Ok(username_field.clean(username).err().map(|e| e.join("; ")))
        };
        let mut password: Option<String> = None;
        let username: String;
        let mut required_values: Vec<(Field, Option<String>)> = vec![];
        if args.interactive {
            let default_username = if fields.swapped {
                String::new()
            } else {
                let candidate = default_username_candidate(
                    &system_username(|k| std::env::var(k).ok()).unwrap_or_default(),
                );
                if !candidate.is_empty() && db.get(&candidate)?.is_some() {
                    String::new()
                } else {
                    candidate
                }
            };
            let mut chosen: Option<String> = username_opt.clone();
            if let Some(u) = &chosen {
                if u.is_empty() {
                    return Err(Exit::Command(format!(
                        "{} cannot be blank.",
                        username_field.capfirst_verbose_name()
                    )));
                }
                if let Some(e) = validate_username(&mut db, u)? {
                    console.err(&e);
                    chosen = None;
                }
            }
            while chosen.is_none() {
                let message = input_message(username_field, &default_username);
                let mut raw = console.input(&message)?;
                if !default_username.is_empty() && raw.is_empty() {
                    raw = default_username.clone();
                }
                match username_field.clean(&raw) {
                    Err(e) => console.err(&format!("Error: {}", e.join("; "))),
                    Ok(v) => {
                        if !v.is_empty() {
                            if let Some(e) = validate_username(&mut db, &v)? {
                                console.err(&e);
                                continue;
                            }
                        }
                        chosen = Some(v);
                    }
                }
            }
            username = chosen.expect("chosen");
            for field in &fields.required {
                let mut value = match &email_opt {
                    Some(v) => Some(field.clean(v).map_err(|e| Exit::Command(e.join("; ")))?),
                    None => None,
                };
                while value.is_none() {
                    let raw = console.input(&input_message(field, ""))?;
                    match field.clean(&raw) {
                        Ok(v) => value = Some(v),
                        Err(e) => console.err(&format!("Error: {}", e.join("; "))),
                    }
                }
                required_values.push((field.clone(), value));
            }
            // The user validate_password sees: UserModel(**fake_user_data).
            let mut attributes: Vec<(String, String)> =
                vec![(username_field.name.clone(), username.clone())];
            for (f, v) in &required_values {
                attributes.push((f.name.clone(), v.clone().unwrap_or_default()));
            }
            loop {
                let p1 = getpass("Password: ")?;
                let p2 = getpass("Password (again): ")?;
                if p1 != p2 {
                    console.err("Error: Your passwords didn't match.");
                    continue;
                }
                if py_strip(&p1).is_empty() {
                    console.err("Error: Blank passwords aren't allowed.");
                    continue;
                }
                if let Some(errors) = password_errors(&validators, &p2, &attributes) {
                    console.err(&errors);
                    let response = console
                        .input("Bypass password validation and create user anyway? [y/N]: ")?;
                    if py_lower(&response) != "y" {
                        continue;
                    }
                }
                password = Some(p1);
                break;
            }
        } else {
            if let Ok(p) = std::env::var("DJANGO_SUPERUSER_PASSWORD") {
                password = Some(p);
            }
            let env_name = format!("DJANGO_SUPERUSER_{}", username_field.name.to_uppercase());
            let Some(u) = username_opt
                .clone()
                .or_else(|| std::env::var(&env_name).ok())
            else {
                return Err(Exit::Command(format!(
                    "You must use --{} with --noinput.",
                    username_field.name
                )));
            };
            if let Some(e) = validate_username(&mut db, &u)? {
                return Err(Exit::Command(e));
            }
            username = u;
            for field in &fields.required {
                let env_name = format!("DJANGO_SUPERUSER_{}", field.name.to_uppercase());
                let env_value = std::env::var(&env_name).ok();
                let value = match email_opt.as_deref().filter(|v| !v.is_empty()) {
                    Some(v) => Some(v.to_owned()),
                    None => env_value.clone(),
                };
                match value.filter(|v| !v.is_empty()) {
                    None => {
                        // Django 5.0 added: a blank value given for a field with blank=True.
                        if blank_allowed
                            && field.blank
                            && (email_opt.as_deref() == Some("")
                                || env_value.as_deref() == Some(""))
                        {
                            required_values.push((field.clone(), None));
                            continue;
                        }
                        return Err(Exit::Command(format!(
                            "You must use --{} with --noinput.",
                            field.name
                        )));
                    }
                    Some(v) => {
                        let v = field.clean(&v).map_err(|e| Exit::Command(e.join("; ")))?;
                        required_values.push((field.clone(), Some(v)));
                    }
                }
            }
        }
        // UserManager.create_superuser → _create_user.
        let email = required_values
            .iter()
            .find(|(f, _)| f.name == settings.email_field)
            .and_then(|(_, v)| v.clone())
            .unwrap_or_default();
        let encoded = match &password {
            Some(p) => hashers
                .make_password(p, None, None)
                .map_err(|e| db_err(e.to_string()))?,
            None => make_unusable_password(),
        };
        let new = NewUser {
            username: normalize_username(&username),
            email: normalize_email(&email),
            password: encoded,
            is_staff: true,
            is_superuser: true,
        };
        let model = db.model.clone();
        model.create_user(db.conn(), &new).map_err(db_err)?;
        if verbosity >= 1 {
            console.out("Superuser created successfully.");
        }
        Ok(())
    })
}

/// `_get_input_message`.
fn input_message(field: &Field, default: &str) -> String {
    let default = if default.is_empty() {
        String::new()
    } else {
        format!(" (leave blank to use '{default}')")
    };
    format!("{}{default}: ", field.capfirst_verbose_name())
}

/// `djauth changepassword`.
pub fn changepassword(args: ChangepasswordArgs, settings: &Settings) -> CmdResult {
    let hashers = settings.hashers()?;
    let validators = settings.password_validators()?;
    run_command(&args.common, |console| {
        let username = match args.username.as_deref().filter(|u| !u.is_empty()) {
            Some(u) => u.to_owned(),
            None => system_username(|k| std::env::var(k).ok()).unwrap_or_default(),
        };
        let mut db = Db::open(settings)?;
        let Some(mut user) = db.get(&username)? else {
            return Err(Exit::Command(format!("user '{username}' does not exist")));
        };
        console.out(&format!("Changing password for user '{}'", user.username));
        let get_pass = |prompt: &str| -> Result<String, Exit> {
            let p = getpass(prompt)?;
            if p.is_empty() {
                return Err(Exit::Command("aborted".into()));
            }
            Ok(p)
        };
        let attributes: Vec<(String, String)> = vec![
            (settings.username_field.clone(), user.username.clone()),
            ("first_name".into(), user.first_name.clone()),
            ("last_name".into(), user.last_name.clone()),
            (settings.email_field.clone(), user.email.clone()),
        ];
        const MAX_TRIES: u32 = 3;
        let mut count = 0;
        let mut accepted: Option<String> = None;
        while accepted.is_none() && count < MAX_TRIES {
            let p1 = get_pass("Password: ")?;
            let p2 = get_pass("Password (again): ")?;
            if p1 != p2 {
                console.out("Passwords do not match. Please try again.");
                count += 1;
                continue;
            }
            match password_errors(&validators, &p2, &attributes) {
                Some(errors) => {
                    console.err(&errors);
                    count += 1;
                }
                None => accepted = Some(p1),
            }
        }
        let Some(password) = accepted else {
            return Err(Exit::Command(format!(
                "Aborting password change for user '{}' after {count} attempts",
                user.username
            )));
        };
        let encoded = hashers
            .make_password(&password, None, None)
            .map_err(|e| db_err(e.to_string()))?;
        let model = db.model.clone();
        model
            .set_password(db.conn(), &mut user, encoded)
            .map_err(db_err)?;
        console.out(&format!(
            "Password changed successfully for user '{}'",
            user.username
        ));
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn username_field() -> Field {
        Field {
            name: "username".into(),
            verbose_name: "username".into(),
            kind: FieldKind::Username,
            blank: false,
        }
    }

    fn email_field() -> Field {
        Field {
            name: "email".into(),
            verbose_name: "email address".into(),
            kind: FieldKind::Email,
            blank: true,
        }
    }

    #[test]
    fn username_clean_matches_django() {
        let f = username_field();
        assert_eq!(f.clean("alice.b@x+y-z_1"), Ok("alice.b@x+y-z_1".into()));
        assert_eq!(f.clean("Jöhn_Ωμέγα"), Ok("Jöhn_Ωμέγα".into()));
        assert_eq!(f.clean(""), Err(vec![BLANK.to_owned()]));
        assert_eq!(f.clean("a b"), Err(vec![USERNAME_INVALID.to_owned()]));
        assert_eq!(f.clean("ok\n"), Err(vec![USERNAME_INVALID.to_owned()]));
        // a combining mark is not \w in Python
        assert_eq!(f.clean("e\u{301}"), Err(vec![USERNAME_INVALID.to_owned()]));
        assert_eq!(
            f.clean(&"x".repeat(151)),
            Err(vec![
                "Ensure this value has at most 150 characters (it has 151).".to_owned()
            ])
        );
        assert_eq!(
            f.clean(&"a b".repeat(60)),
            Err(vec![
                USERNAME_INVALID.to_owned(),
                "Ensure this value has at most 150 characters (it has 180).".to_owned()
            ])
        );
        assert!(f.clean(&"é".repeat(150)).is_ok());
    }

    #[test]
    fn email_clean_matches_django() {
        let f = email_field();
        assert_eq!(f.clean(""), Ok(String::new()));
        for ok in [
            "a@b.co",
            "Admin@Example.COM",
            "first.last+tag@sub.example.org",
            "user@localhost",
            "\"quoted\\ string\"@example.com",
            "\"esc\\\"aped\"@example.com",
            "a@[127.0.0.1]",
            "a@[::1]",
            "a@[IPv6]".replace("IPv6", "::ffff:1.2.3.4").as_str(),
            "a@xn--80ak6aa92e.xn--p1ai",
            "a@bücher.de",
            "\u{212a}elvin@x.xn--\u{212a}1",
            "a@b-c.d-e.fg",
        ] {
            assert_eq!(f.clean(ok), Ok(ok.to_owned()), "{ok}");
        }
        for bad in [
            "plain",
            "@example.com",
            "a@",
            " a@b.com",
            "a@b.com ",
            "a..b@c.com",
            ".a@c.com",
            "a.@c.com",
            "a@b",
            "a@b.c",
            "a@-b.com",
            "a@b-.com",
            "a@b..com",
            "a@b.com.",
            "a@b.-com",
            "a@b.co-",
            "a@b.c0m",
            "a@[1.2.3]",
            "a@[01.2.3.4]",
            "a@[1::2::3]",
            "a@[g::1]",
            "\"unterminated@example.com",
            "\"a\"b\"@example.com",
            "a b@example.com",
            "a@LOCALHOST",
            "\"quoted string\"@example.com",
        ] {
            assert_eq!(f.clean(bad), Err(vec![EMAIL_INVALID.to_owned()]), "{bad}");
        }
        let label = "b".repeat(64);
        assert_eq!(
            f.clean(&format!("a@{label}.com")),
            Err(vec![EMAIL_INVALID.to_owned()])
        );
        assert!(f.clean(&format!("a@{}.com", "b".repeat(63))).is_ok());
        assert_eq!(
            f.clean(&format!("a@{}.com", "b".repeat(300))),
            Err(vec![
                EMAIL_INVALID.to_owned(),
                "Ensure this value has at most 254 characters (it has 306).".to_owned()
            ])
        );
    }

    #[test]
    fn ip_literals_follow_python_ipaddress() {
        // (text, IPv4Address accepts, is_valid_ipv6_address accepts), from CPython 3.11.
        let cases = [
            ("1.2.3.4", true, false),
            ("01.2.3.4", false, false),
            ("1.2.3", false, false),
            ("256.1.1.1", false, false),
            ("0.0.0.0", true, false),
            ("1.2.3.4.", false, false),
            ("::1", false, true),
            ("::", false, true),
            ("1::", false, true),
            ("::ffff:1.2.3.4", false, true),
            ("::1.2.3.4", false, true),
            ("1:2:3:4:5:6:7:8", false, true),
            ("1:2:3:4:5:6:7::", false, true),
            ("::2:3:4:5:6:7:8", false, true),
            ("1:2:3:4:5:6:7:8:9", false, false),
            ("1::2::3", false, false),
            ("12345::", false, false),
            ("0001::", false, true),
            ("00001::", false, false),
            ("1:2:3:4:5:6:1.2.3.4", false, true),
            ("1:2:3:4:5:6:7:1.2.3.4", false, false),
            ("::ffff:01.2.3.4", false, false),
            (":1::", false, false),
            (":::", false, false),
            ("1:", false, false),
            ("1:2:3:4:5:6:7:8::", false, false),
            ("abcd:ef01:2345:6789:abcd:ef01:2345:6789", false, true),
            ("ABCD::", false, true),
            ("1.2.3.4::", false, false),
            ("::1.2.3", false, false),
            ("::1.2.3.4.5", false, false),
            ("1:2:3:4:5:6:7:8:", false, false),
            ("aaa::1.2.3.4", false, true),
        ];
        for (s, v4, v6) in cases {
            assert_eq!(is_ipv46(s), v4 || v6, "{s}");
        }
    }

    #[test]
    fn email_normalisation() {
        assert_eq!(normalize_email("Admin@Example.COM"), "Admin@example.com");
        assert_eq!(normalize_email("  A@B.ORG \n"), "A@b.org");
        assert_eq!(normalize_email("a@b@C.D"), "a@b@c.d");
        assert_eq!(normalize_email("no-at-sign "), "no-at-sign ");
        assert_eq!(normalize_email(""), "");
        assert_eq!(normalize_email("x@İSTANBUL.TR"), "x@i\u{307}stanbul.tr");
    }

    #[test]
    fn username_normalisation_is_nfkc() {
        assert_eq!(normalize_username("ｆｕｌｌ"), "full");
        assert_eq!(normalize_username("e\u{301}"), "é");
        assert_eq!(normalize_username("ﬁ"), "fi");
    }

    #[test]
    fn default_username() {
        assert_eq!(default_username_candidate("Jöhn Doe"), "johndoe");
        assert_eq!(default_username_candidate("root"), "root");
        assert_eq!(default_username_candidate("Ærøskøbing"), "rskbing");
        assert_eq!(default_username_candidate("a:b"), "");
        assert_eq!(default_username_candidate("日本"), "");
        assert_eq!(default_username_candidate(&"x".repeat(151)), "");
        let env = |k: &str| match k {
            "LOGNAME" => Some(String::new()),
            "USER" => Some("fromuser".to_owned()),
            _ => None,
        };
        assert_eq!(system_username(env).as_deref(), Some("fromuser"));
    }

    #[test]
    fn prompts() {
        assert_eq!(
            input_message(&username_field(), "bob"),
            "Username (leave blank to use 'bob'): "
        );
        assert_eq!(input_message(&username_field(), ""), "Username: ");
        assert_eq!(input_message(&email_field(), ""), "Email address: ");
    }

    #[test]
    fn django_colors() {
        let dark = Some("31;1".to_owned());
        assert_eq!(error_role_codes(""), dark);
        assert_eq!(error_role_codes("light"), dark);
        assert_eq!(error_role_codes("nocolor"), None);
        assert_eq!(
            error_role_codes("nocolor;error=yellow/blue,blink"),
            Some("33;44;5".into())
        );
        assert_eq!(error_role_codes("error=green"), Some("32".into()));
        assert_eq!(error_role_codes("success=green"), Some(String::new()));
        assert_eq!(error_role_codes("bogus=green"), None);
        assert_eq!(
            styled_error("Error: x", Some("31;1")),
            "\x1b[31;1mError: x\n\x1b[0m"
        );
        assert_eq!(styled_error("plain\n", None), "plain\n");
    }
}
