"""The model2vec embedder with a tiny model written by model2vec's own save path (tests/helpers/models.py):
real loading and embedding, searching by meaning, re-embedding on a change of model, vectors of the wrong size
left out, and models that do not load refused with nothing changed. Nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest

from agentlog.errors import UsageError
from agentlog.memory.embedding import DEFAULT_EMBEDDER, Model2VecEmbedder, embedder_for
from tests.helpers.models import tiny_model


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return tiny_model(tmp_path_factory.mktemp("models") / "tiny")


def test_a_local_model_loads_and_embeds_by_meaning(model_dir):
    model = embedder_for(f"model2vec:{model_dir}")
    assert isinstance(model, Model2VecEmbedder) and model.meaning and model.dim == 8
    assert model.name.startswith("model2vec:tiny@") and str(model_dir) not in model.name   # no local path
    couch, sofa, car, nothing = model.embed(["couch", "sofa", "parked car", "zzz qqq"])
    assert float(couch @ sofa) > 0.9 > 0.2 > float(couch @ car)
    assert not nothing.any() and np.allclose(np.linalg.norm([couch, sofa, car], axis=1), 1, atol=1e-5)
    assert embedder_for(f"model2vec:{model_dir}") is model                        # loaded once per process


def test_switching_to_the_model_reembeds_and_searches_by_meaning(laptop, model_dir, tmp_path):
    sofa = laptop.memory.put("The new sofa is grey")
    car = laptop.memory.put("The car is parked in the garage")
    assert laptop.memory.search("couch").mode == "lexical"                        # hashed letters: no meaning
    laptop.memory.use_embedder(f"model2vec:{model_dir}")
    found = laptop.memory.search("couch")
    assert (found.mode, found.model, found.searched) == ("hybrid", laptop.memory.embedder.name, 2)
    assert found.hits[0].entry.id == sofa
    assert laptop.memory.search("couch", ranking="vector").mode == "semantic"
    other = tiny_model(tmp_path / "other", dim=6, seed=1)                          # a changed model: a new name
    laptop.memory.use_embedder(f"model2vec:{other}")
    again = laptop.memory.search("garage parking", ranking="vector")
    assert again.model != found.model and again.hits[0].entry.id == car and laptop.memory.matrix().dim == 6


def test_a_stored_vector_of_the_wrong_size_for_the_model_is_left_out(laptop, model_dir):
    name = embedder_for(f"model2vec:{model_dir}").name
    odd = laptop.memory.put("An old sofa in the attic", embedding=[0.5] * 5, model=name)
    laptop.memory.put("A sofa bed for guests")
    laptop.memory.use_embedder(f"model2vec:{model_dir}")
    found = laptop.memory.search("couch", ranking="vector")
    assert found.excluded == 1 and odd not in [h.entry.id for h in found.hits] and len(found.hits) == 1


@pytest.mark.parametrize("spec, message", [
    ("model2vec:", "needs a model directory or a hub id"),
    ("model2vec:./no/such/dir", "no model directory"),
    ("word2vec:x", "unknown embedder"),
])
def test_unknown_models_are_refused_and_change_nothing(laptop, spec, message):
    before = laptop.meta("embedder")
    with pytest.raises(UsageError, match=message):
        laptop.memory.use_embedder(spec)
    assert laptop.meta("embedder") == before and laptop.memory.embedder.name == DEFAULT_EMBEDDER


def test_a_model_file_that_does_not_load_is_refused(laptop, tmp_path):
    broken = tiny_model(tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(UsageError, match="cannot load the embedding model") as caught:
        laptop.memory.use_embedder(f"model2vec:{broken}")
    assert "\n" not in str(caught.value) and laptop.meta("embedder") is None
