"""lm-eval's prompts rendered with each Jinja template compiled once are the strings lm-eval renders."""
import pytest
from lm_eval import utils as lm_utils

from cpt_utils.task_suite import templates_compiled_once

TEMPLATES = ["Question: {{question}}\nAnswer:", "{{choices.text}}", "{{answerKey | regex_replace('[^A-D]', '')}}",
             "{{ [choices.text[0], choices.text[1]] }}"]
DOCS = [{"question": f"What is {i} + {i}?", "choices": {"text": [str(2 * i), str(i)]}, "answerKey": " B!"}
        for i in range(5)]


def test_same_strings_as_lm_eval_and_each_template_compiled_once():
    expected = [lm_utils.apply_template(t, d) for d in DOCS for t in TEMPLATES]
    with templates_compiled_once() as compiled:
        got = [lm_utils.apply_template(t, d) for d in DOCS for t in TEMPLATES]
        assert compiled.cache_info().misses == len(TEMPLATES)  # compiled once each, not once per document
    assert got == expected


def test_lm_eval_function_restored_even_after_an_error():
    original = lm_utils.apply_template
    with pytest.raises(RuntimeError), templates_compiled_once():
        assert lm_utils.apply_template is not original
        raise RuntimeError("boom")
    assert lm_utils.apply_template is original


def test_a_missing_field_still_fails_as_in_lm_eval():
    from jinja2 import UndefinedError  # lm-eval's env is StrictUndefined: a typo in a task must not render ""

    with pytest.raises(UndefinedError), templates_compiled_once():
        lm_utils.apply_template("{{questoin}}", DOCS[0])
