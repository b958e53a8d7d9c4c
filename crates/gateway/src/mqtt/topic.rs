//! Topic filters and output-topic templates.
//!
//! A trigger's `output_topic` is a template: `{1}`, `{2}`, ... stand for the
//! input topic's levels that the filter's wildcards matched (`+` one level,
//! `#` the rest, joined with `/`), and `{topic}` for the whole input topic.
//! Templates are parsed once, when the config is loaded, so a bad one is a
//! config error rather than a failed message.

/// Why a topic filter cannot be subscribed to (MQTT 5 §4.7.1), if it
/// cannot.
pub(crate) fn invalid_filter(filter: &str) -> Option<&'static str> {
    if filter.is_empty() {
        return Some("the filter is empty");
    }
    if filter.len() > 65_535 {
        return Some("the filter is longer than 65,535 bytes");
    }
    if filter.contains('\0') {
        return Some("the filter contains NUL");
    }
    if filter.starts_with("$share/") {
        return Some("write the group as shared_group, not as a $share/ prefix");
    }
    let levels: Vec<&str> = filter.split('/').collect();
    for (i, level) in levels.iter().enumerate() {
        if level.contains('#') && (*level != "#" || i + 1 != levels.len()) {
            return Some("`#` must be a whole level, and the last one");
        }
        if level.contains('+') && *level != "+" {
            return Some("`+` must be a whole level");
        }
    }
    None
}

/// The input topic's levels matched by `filter`'s wildcards, in order: one
/// per `+`, and for a final `#` the rest of the topic (possibly empty).
/// `None` when the filter does not match.
pub(crate) fn captures<'t>(filter: &str, topic: &'t str) -> Option<Vec<&'t str>> {
    if !shanhai_runtime::topic_matches(filter, topic) {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = topic;
    for level in filter.split('/') {
        if level == "#" {
            out.push(rest);
            return Some(out);
        }
        let (head, tail) = rest.split_once('/').unwrap_or((rest, ""));
        if level == "+" {
            out.push(head);
        }
        rest = tail;
    }
    Some(out)
}

/// A parsed output-topic template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TopicTemplate {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    /// `{N}`: the N-th capture, counted from 1.
    Capture(usize),
    /// `{topic}`.
    Topic,
}

impl TopicTemplate {
    /// Parses `template` for a trigger whose filter has `wildcards`
    /// wildcard levels.
    pub(crate) fn parse(template: &str, wildcards: usize) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut text = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('{') {
            text.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let Some(close) = after.find('}') else {
                return Err(format!("`{template}` has a `{{` without its `}}`"));
            };
            let name = &after[..close];
            let part = match name {
                "topic" => Part::Topic,
                // Digits only: `parse` would also take `+1`.
                n => match n.parse::<usize>() {
                    Ok(i) if !n.bytes().all(|b| b.is_ascii_digit()) => {
                        return Err(format!(
                            "`{{{n}}}` in `{template}`: use {{1}}, {{2}}, ... or {{topic}} (not {{{i}}})"
                        ));
                    }
                    Ok(i) if i >= 1 && i <= wildcards => Part::Capture(i),
                    Ok(i) => {
                        return Err(format!(
                            "`{{{i}}}` in `{template}`: the filter has {wildcards} wildcard level(s)"
                        ));
                    }
                    Err(_) => {
                        return Err(format!(
                            "`{{{n}}}` in `{template}`: use {{1}}, {{2}}, ... or {{topic}}"
                        ));
                    }
                },
            };
            if !text.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut text)));
            }
            parts.push(part);
            rest = &after[close + 1..];
        }
        text.push_str(rest);
        if !text.is_empty() {
            parts.push(Part::Text(text));
        }
        let parsed = Self { parts };
        // Captures are topic levels, which hold no wildcards: only the
        // literal text can make a rendered topic invalid.
        let literal: String = parsed
            .parts
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        // A `}` anywhere in the text, not only after the last placeholder.
        if literal.contains('}') {
            return Err(format!("`{template}` has a `}}` without its `{{`"));
        }
        if literal.contains(['+', '#', '\0']) {
            return Err(format!(
                "`{literal}`: a topic to publish to cannot contain +, # or NUL"
            ));
        }
        if parsed.parts.is_empty() {
            return Err("the template is empty".into());
        }
        Ok(parsed)
    }

    /// The topic to publish to for an input `topic` with wildcard
    /// `captures`, or why it cannot be published to: a capture may be empty
    /// (`a/+` matches `a/`), so `{1}` alone can render an empty topic, and
    /// a long input topic can render one beyond MQTT's 65,535 bytes.
    pub(crate) fn topic_for(&self, topic: &str, captures: &[&str]) -> Result<String, String> {
        let to = self.render(topic, captures);
        match shanhai_runtime::invalid_topic(&to) {
            None => Ok(to),
            Some(why) => Err(format!("the rendered topic `{to}`: {why}")),
        }
    }

    /// The topic for an input `topic` with wildcard `captures`.
    pub(crate) fn render(&self, topic: &str, captures: &[&str]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(text) => out.push_str(text),
                Part::Capture(i) => out.push_str(captures.get(i - 1).copied().unwrap_or("")),
                Part::Topic => out.push_str(topic),
            }
        }
        out
    }
}

/// How many wildcard levels `filter` has.
pub(crate) fn wildcards(filter: &str) -> usize {
    filter.split('/').filter(|l| *l == "+" || *l == "#").count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_checked() {
        for good in ["a", "a/+/c", "#", "a/#", "+", "+/+", "$SYS/#", "a//b"] {
            assert_eq!(invalid_filter(good), None, "{good}");
        }
        for bad in ["", "a/#/c", "a#", "a/b+", "#/a", "$share/g/a", "a\0"] {
            assert!(invalid_filter(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn captures_follow_the_wildcards() {
        assert_eq!(
            captures("sensors/+/raw/+", "sensors/t1/raw/x"),
            Some(vec!["t1", "x"])
        );
        assert_eq!(captures("a/#", "a/b/c"), Some(vec!["b/c"]));
        assert_eq!(captures("a/#", "a"), Some(vec![""]));
        assert_eq!(captures("+/#", "x/y/z"), Some(vec!["x", "y/z"]));
        assert_eq!(captures("a/b", "a/b"), Some(vec![]));
        assert_eq!(captures("a/+", "b/c"), None);
        assert_eq!(captures("a/+/c", "a//c"), Some(vec![""]));
    }

    #[test]
    fn templates_render_captures_and_the_topic() {
        let t = TopicTemplate::parse("out/{2}/{1}", 2).unwrap();
        assert_eq!(t.render("in/a/b", &["a", "b"]), "out/b/a");
        let t = TopicTemplate::parse("copy/{topic}", 0).unwrap();
        assert_eq!(t.render("x/y", &[]), "copy/x/y");
        let t = TopicTemplate::parse("fixed", 1).unwrap();
        assert_eq!(t.render("x", &["x"]), "fixed");
        for (bad, wildcards) in [
            ("out/{3}", 2),
            ("out/{0}", 2),
            ("out/{x}", 2),
            ("out/{1", 2),
            ("out/1}", 2),
            ("a}b/{1}", 2),
            ("out/{+1}", 2),
            ("out/+", 2),
            ("out/#", 2),
            ("", 0),
        ] {
            assert!(TopicTemplate::parse(bad, wildcards).is_err(), "{bad}");
        }
    }
}
