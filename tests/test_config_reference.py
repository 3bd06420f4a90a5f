"""docs/configs.md lists every key of configs/base.py with its default, and is what the generator writes."""
import os
import re
import textwrap

from configs import base
from t5x_like import config_reference

DOC = os.path.join(config_reference.ROOT, "docs", "configs.md")


def test_doc_lists_every_key_with_its_default():
    doc = open(DOC).read()
    listed = dict(re.findall(r"^\| `([^`]+)` \| `(.*?)` \|", doc, flags=re.M))
    keys = dict(config_reference.flatten(base.get_config()))
    assert set(listed) == set(keys), "regenerate: python -m launch.config_reference --output=docs/configs.md"
    for key, value in keys.items():
        assert listed[key].replace("\\|", "|") == repr(value), key


def test_doc_is_up_to_date():
    assert open(DOC).read() == config_reference.markdown(base.get_config()), (
        "docs/configs.md is stale: python -m launch.config_reference --output=docs/configs.md")


def test_comments_are_read_from_the_source(tmp_path, monkeypatch):
    source = textwrap.dedent('''
        def get_x():
            x = object()
            # the first line of the comment above
            # and its second line
            x.a = 1  # inline
            x.b.c = (1,
                     2)  # on the closing line
            x.d = "# not a comment"
    ''')
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "x.py").write_text(source)
    monkeypatch.setattr(config_reference, "ROOT", str(tmp_path))
    assert config_reference.section_comments("configs/x.py", "get_x", "sec") == {
        "sec.a": "the first line of the comment above and its second line inline",
        "sec.b.c": "on the closing line",
        "sec.d": "",
    }
