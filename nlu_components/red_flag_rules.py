"""Red-flag rules: high-precision patterns that mark a patient's message as an emergency.

Pure Python, no Rasa, so the rules can be tested one by one and reused. The rule set is read
from `data/red_flags.yml` (see the comments there for the format). A rule fires when

- every `symptom` group has a match that is described as happening: not negated in its clause
  ("no swelling", "isn't bleeding"), not only asked about in general ("does filler make
  your lips go white?" with nothing in the message saying it is happening now), and not only
  a condition ("can she have calpol if she gets a temperature?");
- every `context` group has a match that is not negated (a question about it is fine:
  "my lip has gone white, is that normal after filler?");
- none of its `unless` terms appear.

A group is a list of terms; a term is a regular expression over the lower-cased message,
matched as whole words, or `@name` for a shared list from `terms:`.
"""

from __future__ import annotations

import hashlib
import json
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

SUPPORTED_VERSIONS = {"1"}


class RuleFileError(ValueError):
    """The red-flag rule file is malformed (bad YAML, unknown term list, bad regex...)."""


@dataclass(frozen=True)
class Firing:
    """One rule that fired on a message, with the phrases that made it fire."""

    rule: str
    description: str
    evidence: tuple[str, ...]

    def as_output(self) -> dict[str, str]:
        return {"rule": self.rule, "description": self.description}


@dataclass(frozen=True)
class _Rule:
    id: str
    description: str
    symptom: tuple[re.Pattern[str], ...]
    context: tuple[re.Pattern[str], ...]
    unless: re.Pattern[str] | None
    examples: tuple[str, ...]
    near_misses: tuple[str, ...]


def normalise(text: str) -> str:
    """Lower case, apostrophes dropped, hyphens in words spaced, spaces collapsed."""
    folded = unicodedata.normalize("NFKC", text or "").lower()
    # Apostrophes are dropped so rules say "cant", "its", "wont" once for every spelling.
    folded = re.sub("['\u2019\u2018`\u00b4]", "", folded)
    folded = folded.replace("\u201c", '"').replace("\u201d", '"').replace("&", " and ")
    folded = re.sub(r"(?<=\w)[-\u2010\u2011](?=\w)", " ", folded)  # non-blanching, anti-wrinkle
    return "\n".join(" ".join(line.split()) for line in folded.splitlines())


def _whole_words(terms: Iterable[str]) -> str:
    return r"(?<![\w])(?:" + "|".join(f"(?:{term})" for term in terms) + r")(?![\w])"


def _words(values: Any, where: str) -> list[str]:
    """A list of strings from YAML, refusing the values YAML 1.1 turns into booleans (no, yes)."""
    words = []
    for value in values or []:
        if isinstance(value, bool) or value is None:
            raise RuleFileError(f"{where}: {value!r} is not text; quote words like 'no' and 'yes'")
        words.append(str(value))
    return words


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as error:
        raise RuleFileError(f"{where}: bad regular expression: {error}") from error


class RedFlagRules:
    """A loaded, compiled rule set."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        if not isinstance(spec, Mapping):
            raise RuleFileError("the rule file must be a mapping with a 'red_flags' list")
        version = str(spec.get("version", "1"))
        if version not in SUPPORTED_VERSIONS:
            raise RuleFileError(f"unsupported red-flag file version {version!r}")
        self.spec: dict[str, Any] = json.loads(json.dumps(spec))  # plain, persistable copy
        self._terms: dict[str, list[str]] = {
            str(name): _words(terms, f"terms.{name}")
            for name, terms in (spec.get("terms") or {}).items()
        }
        negation = spec.get("negation") or {}
        self._window = int(negation.get("window", 4))
        self._negators = set(_words(negation.get("negators"), "negation.negators"))
        self._interjection_after_no = set(
            _words(negation.get("interjection_after_no"), "negation.interjection_after_no"))
        self._pseudo = [_compile(p, "negation.pseudo")
                        for p in _words(negation.get("pseudo"), "negation.pseudo")]
        breaks = _words(negation.get("clause_breaks"), "negation.clause_breaks")
        self._clause_break = _compile(
            r"[,;:()\[\]\n]|\s-\s|" + (_whole_words(breaks) if breaks else r"(?!x)x"),
            "negation.clause_breaks",
        )
        general = spec.get("general_questions") or {}
        self._lead_in = _compile(
            r"^(?:(?:" + "|".join(_words(general.get("lead_ins"), "general_questions.lead_ins")
                                  or [r"(?!x)x"]) + r")\W+)*",
            "general_questions.lead_ins",
        )
        self._frames = _compile(
            r"^(?:" + "|".join(_words(general.get("frames"), "general_questions.frames")
                               or [r"(?!x)x"]) + r")(?!\w)",
            "general_questions.frames",
        )
        self._conditional = _compile(
            _whole_words(_words(general.get("conditionals"), "general_questions.conditionals")
                         or [r"(?!x)x"]),
            "general_questions.conditionals",
        )
        self._current = _compile(
            _whole_words(_words(general.get("current_markers"), "general_questions.current_markers")
                         or [r"(?!x)x"]),
            "general_questions.current_markers",
        )
        self.rules: list[_Rule] = [self._rule(item) for item in spec.get("red_flags") or []]
        ids = [rule.id for rule in self.rules]
        duplicates = sorted({i for i in ids if ids.count(i) > 1})
        if duplicates:
            raise RuleFileError(f"duplicate red-flag ids: {', '.join(duplicates)}")
        if not self.rules:
            raise RuleFileError("the rule file has no red_flags")

    @classmethod
    def from_file(cls, path: str | Path) -> RedFlagRules:
        try:
            spec = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except yaml.YAMLError as error:
            raise RuleFileError(f"{path}: {error}") from error
        return cls(spec)

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(json.dumps(self.spec, sort_keys=True).encode()).hexdigest()

    def _expand(self, terms: Iterable[Any], where: str) -> list[str]:
        def shared(match: re.Match[str]) -> str:
            if match.group(1) not in self._terms:
                raise RuleFileError(f"{where}: unknown term list @{match.group(1)}")
            return "(?:" + "|".join(self._terms[match.group(1)]) + ")"

        expanded = [re.sub(r"@(\w+)", shared, term) for term in _words(terms, where)]
        if not expanded:
            raise RuleFileError(f"{where}: empty group")
        return expanded

    def _group(self, group: Any, where: str) -> re.Pattern[str]:
        terms = group if isinstance(group, list) else [group]
        return _compile(_whole_words(self._expand(terms, where)), where)

    def _rule(self, item: Mapping[str, Any]) -> _Rule:
        rule_id = str(item.get("id") or "").strip()
        if not rule_id:
            raise RuleFileError(f"a red flag without an id: {item!r}")
        if not item.get("symptom"):
            raise RuleFileError(f"{rule_id}: needs at least one symptom group")
        unless = item.get("unless") or []
        return _Rule(
            id=rule_id,
            description=str(item.get("description") or rule_id),
            symptom=tuple(self._group(g, f"{rule_id}.symptom") for g in item["symptom"]),
            context=tuple(self._group(g, f"{rule_id}.context") for g in item.get("context") or []),
            unless=self._group(unless, f"{rule_id}.unless") if unless else None,
            examples=tuple(str(e) for e in item.get("examples") or []),
            near_misses=tuple(str(e) for e in item.get("near_misses") or []),
        )

    # -- reading a message --------------------------------------------------------------------

    def _clause_start(self, text: str, position: int) -> int:
        start = 0
        for match in self._clause_break.finditer(text, 0, position):
            start = match.end()
        sentence_end = max(text.rfind(mark, 0, position) for mark in ".!?")
        return max(start, sentence_end + 1)

    def _clause_end(self, text: str, position: int) -> int:
        ends = [m.start() for m in self._clause_break.finditer(text, position)][:1]
        ends += [i for i in (text.find(mark, position) for mark in ".!?") if i >= 0]
        return min(ends, default=len(text))

    def _negated(self, text: str, start: int) -> bool:
        prefix = text[self._clause_start(text, start):start]
        for pseudo in self._pseudo:
            prefix = pseudo.sub(" _ ", prefix)
        tokens = re.findall(r"\w+", prefix)[-self._window:]
        following = tokens[1:] + re.findall(r"\w+", text[start:start + 40])[:1]
        for token, after in zip(tokens, following, strict=False):
            if token not in self._negators:
                continue
            if token == "no" and after in self._interjection_after_no:
                continue  # "no, it's gone white" / "no it's worse": an answer, not a negation
            return True
        return False

    def _asked_in_general(self, text: str, start: int) -> bool:
        clause = text[self._clause_start(text, start):self._clause_end(text, start)].strip()
        clause = self._lead_in.sub("", clause)
        return bool(self._frames.match(clause))

    def _conditional_only(self, text: str, start: int) -> bool:
        """'... if she gets a temperature': a condition, unless that part says it is happening."""
        clause_start = self._clause_start(text, start)
        conditions = list(self._conditional.finditer(text, clause_start, start))
        if not conditions:
            return False
        condition = text[conditions[-1].start():self._clause_end(text, start)]
        return not self._current.search(condition)

    def _evidence(self, group: re.Pattern[str], text: str, *, symptom: bool,
                  happening_now: bool) -> str | None:
        for match in group.finditer(text):
            if self._negated(text, match.start()):
                continue
            if symptom and not happening_now and self._asked_in_general(text, match.start()):
                continue
            if symptom and self._conditional_only(text, match.start()):
                continue
            return match.group(0)
        return None

    def _fires(self, rule: _Rule, text: str, happening_now: bool) -> Firing | None:
        if rule.unless is not None and rule.unless.search(text):
            return None
        evidence: list[str] = []
        for group in rule.symptom:
            found = self._evidence(group, text, symptom=True, happening_now=happening_now)
            if found is None:
                return None
            evidence.append(found)
        for group in rule.context:
            found = self._evidence(group, text, symptom=False, happening_now=happening_now)
            if found is None:
                return None
            evidence.append(found)
        return Firing(rule=rule.id, description=rule.description, evidence=tuple(evidence))

    def matches(self, text: str) -> list[Firing]:
        """Every rule that fires on the message, in file order."""
        normalised = normalise(text)
        if not normalised.strip():
            return []
        happening_now = bool(self._current.search(normalised))
        return [firing for rule in self.rules
                if (firing := self._fires(rule, normalised, happening_now)) is not None]

    def first_match(self, text: str) -> Firing | None:
        """The first rule (in file order) that fires on the message, if any."""
        found = self.matches(text)
        return found[0] if found else None

    def self_check(self) -> list[str]:
        """Problems with the file's own examples: examples that miss, near misses that fire."""
        problems = []
        for rule in self.rules:
            for example in rule.examples:
                if rule.id not in {f.rule for f in self.matches(example)}:
                    problems.append(f"{rule.id}: example does not fire: {example!r}")
            for near_miss in rule.near_misses:
                fired = self.matches(near_miss)
                if fired:
                    names = ", ".join(f.rule for f in fired)
                    problems.append(f"{rule.id}: near miss fires {names}: {near_miss!r}")
        return problems
