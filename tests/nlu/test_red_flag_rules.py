"""The red-flag rules in data/red_flags.yml, one by one: messages that must fire, near misses
that must not, and the reading of negation and general questions they rely on."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from nlu_components.red_flag_rules import RedFlagRules, RuleFileError, normalise

RULES_FILE = Path(__file__).resolve().parents[2] / "data" / "red_flags.yml"
RULES = RedFlagRules.from_file(RULES_FILE)

# Per rule: messages that must fire it (beyond the file's own examples), and near misses that
# must fire nothing. Written apart from the file so a rule edit cannot quietly rewrite both.
CASES: dict[str, tuple[list[str], list[str]]] = {
    "vascular_occlusion_after_filler": (
        ["my lip looks white after filler",
         "Top lip is blanching where the filler went in, please call",
         "had cheek filler at 2pm and now theres a dusky grey patch",
         "is it normal that my lip is white after filler yesterday?",
         "lip filler this morning, now the skin looks mottled"],
        ["does lip filler hurt?",
         "will my lips go white after filler?",
         "can you get whitening and botox at the same appointment",
         "lip filler booked for friday, whats the price",
         "no white patches, just slight swelling after filler"],
    ),
    "vision_change_after_injection": (
        ["my vision is blurry since the botox this morning",
         "after the tear trough injections I'm seeing double",
         "lost vision in my left eye after filler"],
        ["can botox cause vision problems?",
         "does filler ever make you go blind?",
         "I can't see a price for botox on your website"],
    ),
    "bleeding_will_not_stop": (
        ["still bleeding from the socket after 4 hours",
         "bleeding wont stop after my tooth was pulled",
         "my gum has been bleeding for hours and won't clot"],
        ["does it bleed after a tooth extraction?",
         "my gums bleed a bit when I floss",
         "the bleeding stopped after an hour, all fine now"],
    ),
    "breathing_or_throat_trouble": (
        ["I can't breathe",
         "throat feels like its closing up",
         "shes struggling to breathe after the numbing injection"],
        ["does botox affect breathing?",
         "no breathing problems at all, just sore",
         "can I book physio for my breathing exercises after covid",
         "i cant swallow tablets, is there a liquid painkiller?",
         "I was choking on my words lol"],
    ),
    "severe_allergic_reaction": (
        ["I'm having an allergic reaction to the filler",
         "going into anaphylaxis, used my epipen",
         "serious reaction to the numbing, hives all over my chest"],
        ["I had an allergic reaction to latex as a child",
         "what does an allergic reaction to botox look like?",
         "I carry an epipen for nuts, is that ok for filler?"],
    ),
    "allergic_swelling": (
        ["face swelling up after I took the amoxicillin",
         "my lips are puffing up and itchy since the new meds"],
        ["my face swelled up a little after my extraction",
         "do lips swell up after filler?"],
    ),
    "knocked_out_tooth": (
        ["my daughter got her tooth knocked out at football",
         "tooth fell out after I got punched",
         "knocked his front teeth out on the trampoline"],
        ["how much is an implant to replace a knocked out tooth?",
         "my son's wobbly tooth came out last night",
         "my crown fell out, can you fix it"],
    ),
    "facial_swelling_with_fever": (
        ["tooth abscess and I've got a fever",
         "swelling in my jaw is spreading down my neck",
         "cheek swollen and I'm shivering with a temperature"],
        ["a bit of swelling after my filling, no temperature",
         "is it normal to have swelling and a temperature after an extraction?",
         "I have a fever, can I still come for my checkup next week?"],
    ),
    "chest_pain": (
        ["chest pain and my arm feels heavy",
         "my wife has a tight chest and can't catch her breath",
         "pain across my chest since lunch"],
        ["no chest pain, just a checkup",
         "can a chest infection affect my dental appointment?",
         "my dad had a heart attack 2 years ago, can he have whitening?"],
    ),
    "child_fever_and_rash": (
        ["my son has a rash and a high temperature",
         "my 6 month old is burning up and has spots",
         "daughter is feverish and has come out in a rash"],
        ["my son has a rash but no temperature",
         "what are the signs of meningitis in babies?",
         "my daughter had a fever last week, can we book her check up"],
    ),
    "non_blanching_rash": (
        ["rash doesnt go away when I press a glass on it",
         "I have a non-blanching rash on my arms"],
        ["the rash fades when pressed",
         "how do I do the glass test?"],
    ),
    "stroke_signs": (
        ["my dads face is drooping and his speech is slurred",
         "she suddenly can't lift her arm and her face has dropped",
         "I think mum is having a stroke"],
        ["my eyebrow has dropped after botox",
         "physio after a stroke, do you offer that?",
         "can I book physio for my dad, he had a stroke years ago",
         "my dad had a stroke and needs physio"],
    ),
    "self_harm_or_suicidal": (
        ["I want to die",
         "I've been cutting myself",
         "I feel suicidal",
         "thinking of ending my life"],
        ["dying to get my teeth whitened",
         "I could kill for an earlier slot haha",
         "killing myself laughing at your text",
         "gonna die if I don't get my lips done lol"],
    ),
    "collapse_or_seizure": (
        ["he collapsed and isn't responding",
         "my daughter is having a seizure",
         "she passed out in the chair"],
        ["my veneer isnt fitting right",
         "I fainted once at a blood test years ago"],
    ),
    "head_injury_warning_signs": (
        ["he hit his head and keeps being sick",
         "she banged her head on the sink and is really drowsy"],
        ["I banged my head last year, do you do physio for neck pain?",
         "hit my head on the cupboard lol, anyway can I book a cleaning"],
    ),
    "jaw_injury": (
        ["I can't close my mouth, my jaw is stuck open",
         "think I've fractured my jaw"],
        ["my jaw aches when I chew, can I book in",
         "do you treat jaw pain?"],
    ),
    "severe_pain_after_injection": (
        ["severe pain in my lip since the filler",
         "unbearable throbbing where the botox went in"],
        ["is botox painful?",
         "how much pain is normal after filler?"],
    ),
    "young_baby_fever": (
        ["baby is 2 months old with a fever of 38.5",
         "my 3 week old feels really hot, temp 38.2"],
        ["my 8 week old has her jabs today, can she have calpol after if she gets a temperature?",
         "do newborns need a check up?"],
    ),
    "severe_pain_now": (
        ["this toothache is killing me",
         "excruciating pain in my back tooth",
         "worst toothache ever, cant sleep with the pain",
         "pls can someone see me today, in so much pain"],
        ["does a root canal hurt?",
         "no pain at all, just a clean please",
         "it was agony last time, can I have more numbing this time?"],
    ),
    "patient_says_urgent": (
        ["urgent!!",
         "it's an emergency, please ring me",
         "my son needs an urgent appointment"],
        ["not urgent, whenever you have space",
         "non-urgent question about my bill",
         "do you see emergencies?"],
    ),
    "bleeding_in_pregnancy": (
        ["I'm pregnant and I've started bleeding",
         "8 weeks pregnant with bad cramps and spotting"],
        ["can I have a filling when I'm pregnant?",
         "pregnant, my gums keep bleeding when I brush"],
    ),
}

REQUIRED_RULES = {
    "vascular_occlusion_after_filler", "vision_change_after_injection", "bleeding_will_not_stop",
    "breathing_or_throat_trouble", "knocked_out_tooth", "facial_swelling_with_fever",
    "chest_pain", "child_fever_and_rash", "severe_allergic_reaction", "stroke_signs",
    "self_harm_or_suicidal",
}


def fired(text: str) -> list[str]:
    return [firing.rule for firing in RULES.matches(text)]


def test_every_required_emergency_has_a_rule():
    assert {rule.id for rule in RULES.rules} >= REQUIRED_RULES


def test_every_rule_has_its_own_cases_here():
    assert {rule.id for rule in RULES.rules} == set(CASES)


def test_every_rule_in_the_file_has_examples_and_near_misses():
    for rule in RULES.rules:
        assert len(rule.examples) >= 2, rule.id
        assert len(rule.near_misses) >= 2, rule.id


def test_file_examples_fire_and_near_misses_do_not():
    assert RULES.self_check() == []


@pytest.mark.parametrize("rule_id,text", [
    (rule_id, text) for rule_id, (firing, _) in CASES.items() for text in firing])
def test_rule_fires(rule_id: str, text: str):
    assert rule_id in fired(text)


@pytest.mark.parametrize("rule_id,text", [
    (rule_id, text) for rule_id, (_, misses) in CASES.items() for text in misses])
def test_near_miss_fires_nothing(rule_id: str, text: str):
    assert fired(text) == []


@pytest.mark.parametrize("text", [
    "does lip filler hurt?",
    "no pain, just a checkup",
    "Does botox hurt?",
    "what are the side effects of lip filler?",
    "is swelling normal after filler?",
    "how long does bruising last after filler",
    "can I drink alcohol after botox",
    "yes book me in for a cleaning",
    "I'd like to book whitening",
    "how much is lip filler",
    "my gums bleed when I brush, can I book a cleaning",
    "cancel my appointment",
    "STOP",
    "",
])
def test_routine_messages_fire_nothing(text: str):
    assert fired(text) == []


def test_negation_is_limited_to_its_clause():
    assert fired("no pain before, but now my lip has gone white after the filler")
    assert not fired("no white patches after my filler")


def test_no_as_an_answer_does_not_negate():
    assert fired("no its gone white where the filler went")
    assert fired("No, the bleeding won't stop")


def test_a_question_counts_when_the_message_says_it_is_happening():
    assert not fired("can filler make your lip go white?")
    assert fired("had filler this morning, can filler make your lip go white like mine is now?")


def test_apostrophes_and_case_do_not_matter():
    assert normalise("I CAN’T Breathe") == "i cant breathe"
    assert fired("I CAN’T BREATHE") == fired("i cant breathe") != []


def test_first_match_reports_rule_and_description():
    firing = RULES.first_match("my lip is white and swollen after filler")
    assert firing is not None
    assert firing.as_output() == {
        "rule": "vascular_occlusion_after_filler",
        "description": RULES.rules[0].description,
    }
    assert firing.evidence


def _spec(**rule):
    return {"version": "1", "red_flags": [{"id": "r", "symptom": [["pain"]], **rule}]}


def test_unknown_term_list_is_an_error():
    with pytest.raises(RuleFileError, match="unknown term list"):
        RedFlagRules(_spec(symptom=[["@nope"]]))


def test_bad_regular_expression_is_an_error():
    with pytest.raises(RuleFileError, match="bad regular expression"):
        RedFlagRules(_spec(symptom=[["(unclosed"]]))


def test_unquoted_yaml_no_is_refused():
    spec = yaml.safe_load("version: '1'\nnegation:\n  negators: [no, not]\n"
                          "red_flags:\n  - id: r\n    symptom: [[pain]]\n")
    with pytest.raises(RuleFileError, match="quote"):
        RedFlagRules(spec)


def test_duplicate_ids_are_an_error():
    spec = _spec()
    spec["red_flags"].append(dict(spec["red_flags"][0]))
    with pytest.raises(RuleFileError, match="duplicate"):
        RedFlagRules(spec)


def test_rule_file_is_not_read_as_rasa_training_data():
    # Rasa sorts data/ files by top-level keys; this file must never look like NLU or stories.
    from rasa.shared.core.training_data.story_reader.yaml_story_reader import YAMLStoryReader
    from rasa.shared.data import is_nlu_file

    assert not is_nlu_file(str(RULES_FILE))
    assert not YAMLStoryReader.is_stories_file(RULES_FILE)
