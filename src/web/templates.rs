//! `registration/*.html` through minijinja: `TEMPLATE_DIRS` first, then djauth's defaults in
//! `templates/registration/`. Django's own tags that these pages use are translated before
//! minijinja sees the source: `{% csrf_token %}`, `{% url 'name' %}`, `{% load … %}`.

use minijinja::{Environment, Value};
use std::path::PathBuf;

pub struct Templates {
    env: Environment<'static>,
}

const DEFAULTS: &[(&str, &str)] = &[
    (
        "registration/login.html",
        include_str!("../../templates/registration/login.html"),
    ),
    (
        "registration/logged_out.html",
        include_str!("../../templates/registration/logged_out.html"),
    ),
    (
        "registration/base.html",
        include_str!("../../templates/registration/base.html"),
    ),
    (
        "registration/password_change_form.html",
        include_str!("../../templates/registration/password_change_form.html"),
    ),
    (
        "registration/password_change_done.html",
        include_str!("../../templates/registration/password_change_done.html"),
    ),
    (
        "registration/password_reset_form.html",
        include_str!("../../templates/registration/password_reset_form.html"),
    ),
    (
        "registration/password_reset_done.html",
        include_str!("../../templates/registration/password_reset_done.html"),
    ),
    (
        "registration/password_reset_confirm.html",
        include_str!("../../templates/registration/password_reset_confirm.html"),
    ),
    (
        "registration/password_reset_complete.html",
        include_str!("../../templates/registration/password_reset_complete.html"),
    ),
    (
        "registration/password_reset_email.html",
        include_str!("../../templates/registration/password_reset_email.html"),
    ),
    (
        "registration/sessions.html",
        include_str!("../../templates/registration/sessions.html"),
    ),
    (
        "registration/password_reset_subject.txt",
        include_str!("../../templates/registration/password_reset_subject.txt"),
    ),
];

/// Rewrites the Django-only tags into minijinja expressions.
pub fn translate_django_tags(src: &str) -> String {
    let mut out = String::with_capacity(src.len());
    let mut rest = src;
    while let Some(start) = rest.find("{%") {
        let Some(len) = rest[start..].find("%}") else {
            break;
        };
        let tag = rest[start + 2..start + len].trim();
        out.push_str(&rest[..start]);
        let mut words = tag.split_whitespace();
        match words.next() {
            Some("csrf_token") => out.push_str("{{ csrf_input }}"),
            Some("load") => {}
            Some("url") => {
                let args: Vec<&str> = words.collect();
                match args.split_first() {
                    Some((name, params)) => {
                        let mut call = format!("{{{{ url({name}");
                        for p in params {
                            call.push_str(", ");
                            // `uidb64=uid` → `uid`: the view's arguments in the order written.
                            call.push_str(p.split_once('=').map_or(*p, |(_, v)| v));
                        }
                        call.push_str(") }}");
                        out.push_str(&call);
                    }
                    None => out.push_str(&rest[start..start + len + 2]),
                }
            }
            _ => out.push_str(&rest[start..start + len + 2]),
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(rest);
    out
}

impl Templates {
    pub fn new(dirs: &[String]) -> anyhow::Result<Templates> {
        let mut env = Environment::new();
        let dirs: Vec<PathBuf> = dirs.iter().map(PathBuf::from).collect();
        for d in &dirs {
            if !d.is_dir() {
                anyhow::bail!("TEMPLATE_DIRS: {} is not a directory", d.display());
            }
        }
        env.set_loader(move |name: &str| {
            for d in &dirs {
                let path = d.join(name);
                if let Ok(src) = std::fs::read_to_string(&path) {
                    return Ok(Some(translate_django_tags(&src)));
                }
            }
            Ok(DEFAULTS
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, src)| translate_django_tags(src)))
        });
        // The reset email is plain text despite its name (Django renders it inside
        // `{% autoescape off %}`): escaping would turn an apostrophe in a name into `&#x27;`.
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") && name != "registration/password_reset_email.html" {
                minijinja::AutoEscape::Html
            } else {
                minijinja::AutoEscape::None
            }
        });
        // A form field prints its widget HTML, which is already escaped where it needs to be.
        env.set_formatter(|out, state, value| {
            if let Some(html) = super::views::field_html(value) {
                out.write_str(&html)
                    .map_err(|_| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, "write"))
            } else {
                minijinja::escape_formatter(out, state, value)
            }
        });
        env.add_function(
            "url",
            |name: String,
             args: minijinja::value::Rest<Value>|
             -> Result<Value, minijinja::Error> {
                let path = match (name.as_str(), args.len()) {
                    ("password_reset_confirm", 2) => {
                        format!("/accounts/reset/{}/{}/", args[0], args[1])
                    }
                    (name, 0) if super::views::reverse("/accounts/", name).is_some() => {
                        super::views::reverse("/accounts/", name).unwrap_or_default()
                    }
                    // Django raises NoReverseMatch for a name it does not know.
                    (other, _) => {
                        return Err(minijinja::Error::new(
                            minijinja::ErrorKind::InvalidOperation,
                            format!("Reverse for '{other}' not found."),
                        ))
                    }
                };
                // Django escapes only & < > " ' in a {% url %}; minijinja would also escape '/'.
                let escaped = path
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#x27;");
                Ok(Value::from_safe_string(escaped))
            },
        );
        Ok(Templates { env })
    }

    pub fn render(&self, name: &str, ctx: Value) -> Result<String, minijinja::Error> {
        self.env.get_template(name)?.render(ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_templates_compile() {
        let t = Templates::new(&[]).unwrap();
        for (name, _) in DEFAULTS {
            t.env
                .get_template(name)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
        }
    }

    #[test]
    fn url_tag_renders_like_djangos() {
        assert_eq!(
            translate_django_tags("{% url 'password_reset_confirm' uidb64=uid token=token %}"),
            "{{ url('password_reset_confirm', uid, token) }}"
        );
        let mut t = Templates::new(&[]).unwrap();
        t.env
            .add_template_owned(
                "t.html",
                translate_django_tags("<a href=\"{% url 'password_reset' %}\">"),
            )
            .unwrap();
        assert_eq!(
            t.render("t.html", Value::UNDEFINED).unwrap(),
            "<a href=\"/accounts/password_reset/\">"
        );
        t.env
            .add_template_owned("bad.html", translate_django_tags("{% url 'nope' %}"))
            .unwrap();
        assert!(
            t.render("bad.html", Value::UNDEFINED).is_err(),
            "NoReverseMatch"
        );
    }

    #[test]
    fn django_tags_become_minijinja() {
        assert_eq!(
            translate_django_tags("{% load i18n %}<form>{% csrf_token %}<a href=\"{% url 'login' %}\">{% if x %}y{% endif %}"),
            "<form>{{ csrf_input }}<a href=\"{{ url('login') }}\">{% if x %}y{% endif %}"
        );
        assert_eq!(
            translate_django_tags("{% url 'password_reset_confirm' uid token %}"),
            "{{ url('password_reset_confirm', uid, token) }}"
        );
    }
}
