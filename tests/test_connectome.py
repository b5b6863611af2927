"""Connectome loading, exact-label roles, orientation, and null models."""

from __future__ import annotations

import numpy as np
import pytest

from encephagen_gym.connectome import (
    CONNECTOME_NAMES,
    ROLE_TABLES,
    density_matched_random,
    load_connectome,
    rewire_degree_preserving,
)

# Every tvb96 label (hemisphere marker stripped) with its expected role, written out independently of the
# module's table so that a wrong entry there fails here.
EXPECTED_TVB96 = {
    "visual": ["RM-V1", "RM-V2", "RM-VACd", "RM-VACv"],
    "auditory": ["RM-A1", "RM-A2"],
    "somatosensory": ["RM-S1", "RM-S2"],
    "motor": ["RM-M1"],
    "premotor": ["RM-PMCvl", "RM-PMCm", "RM-PMCdl"],
    "prefrontal": ["RM-PFCoi", "RM-PFCom", "RM-PFCol", "RM-PFCpol", "RM-PFCvl", "RM-PFCm", "RM-PFCcl",
                   "RM-PFCdm", "RM-PFCdl", "RM-FEF"],
    "temporal": ["RM-TCpol", "RM-TCs", "RM-TCc", "RM-TCi", "RM-TCv"],
    "parietal": ["RM-PCi", "RM-PCm", "RM-PCip", "RM-PCs"],
    "cingulate": ["RM-CCs", "RM-CCr", "RM-CCp", "RM-CCa"],
    "insula": ["RM-IA", "RM-Ip"],
    "hippocampus": ["RM-HC", "RM-PHC"],
    "amygdala": ["RM-Amyg"],
    "gustatory": ["MM82a-G"],
    "basal_ganglia": ["BG-Cd", "BG-Pu", "BG-Pa", "BG-Acc"],
    "thalamus": ["TM-F", "TM-T", "TM-OP"],
}  # fmt: skip

EXPECTED_TVB76 = {
    "visual": ["V1", "V2"], "auditory": ["A1", "A2"], "somatosensory": ["S1", "S2"], "motor": ["M1"],
    "premotor": ["PMCVL", "PMCM", "PMCDL"],
    "prefrontal": ["PFCORB", "PFCPOL", "PFCVL", "PFCM", "PFCCL", "PFCDM", "PFCDL", "FEF"],
    "temporal": ["TCPOL", "TCS", "TCC", "TCI", "TCV"], "parietal": ["PCI", "PCM", "PCIP", "PCS"],
    "cingulate": ["CCS", "CCR", "CCP", "CCA"], "insula": ["IA", "IP"], "hippocampus": ["HC", "PHC"],
    "amygdala": ["AMYG"], "gustatory": ["G"], "other": ["CC"],
}  # fmt: skip

EXPECTED_TVB66 = {
    "visual": ["PCAL", "CUN", "LING", "LOCC"], "auditory": ["TT"], "somatosensory": ["PSTC"],
    "motor": ["PREC", "PARC"], "premotor": ["CMF"],
    "prefrontal": ["FP", "LOF", "MOF", "POPE", "PORB", "PTRI", "RMF", "SF"],
    "temporal": ["BSTS", "FUS", "IT", "MT", "ST", "TP"], "parietal": ["IP", "PCUN", "SP", "SMAR"],
    "cingulate": ["CAC", "ISTC", "PC", "RAC"], "hippocampus": ["ENT", "PARH"],
}  # fmt: skip


def _invert(expected: dict[str, list[str]]) -> dict[str, str]:
    out = {}
    for role, labels in expected.items():
        for label in labels:
            assert label not in out, f"{label} listed twice"
            out[label] = role
    return out


@pytest.mark.parametrize(
    ("name", "expected", "strip"),
    [
        ("tvb96", EXPECTED_TVB96, lambda lab: lab.rsplit("_", 1)[0]),
        ("tvb76", EXPECTED_TVB76, lambda lab: lab[1:]),
        ("tvb66", EXPECTED_TVB66, lambda lab: lab[1:]),
    ],
)
def test_every_label_has_the_expected_role(name, expected, strip):
    con = load_connectome(name)
    by_label = _invert(expected)
    assert len(con.labels) == {"tvb96": 96, "tvb76": 76, "tvb66": 66}[name]
    for label, role in zip(con.labels, con.roles, strict=True):
        assert role == by_label[strip(label)], label
    # each expected label appears exactly once per hemisphere, and the module table has nothing extra
    stripped = [strip(lab) for lab in con.labels]
    assert sorted(stripped) == sorted(list(by_label) * 2)
    assert set(ROLE_TABLES[name]) == set(by_label)


def test_tvb96_facts_from_the_data():
    con = load_connectome("tvb96")
    assert set(np.unique(con.weights)) == {0.0, 1.0, 2.0, 3.0}  # ordinal CoCoMac-style
    assert abs((con.weights > 0).mean() - 0.427) < 0.001
    assert not np.allclose(con.weights, con.weights.T)
    assert all(lab.startswith(("RM-", "TM-", "BG-", "MM82a-")) for lab in con.labels)
    assert list(con.hemisphere[:48]) == ["R"] * 48 and list(con.hemisphere[48:]) == ["L"] * 48
    off = con.adjacency()
    assert con.tract_lengths_mm[off].min() > 0  # every connected pair has a tract length in mm
    assert not con.cortical[con.index("BG-Pu_R")] and con.cortical[con.index("RM-V1_R")]
    assert "macaque" in con.provenance and "Regional Map" in con.provenance
    with pytest.raises(ValueError):
        con.weights[0, 0] = 5.0  # read-only


def test_orientation_is_source_by_target():
    """Striatum receives from cortex and projects only to the pallidum; pallidum projects to thalamus."""
    con = load_connectome("tvb96")
    for striatum in ("BG-Pu_R", "BG-Cd_L", "BG-Acc_R"):
        i = con.index(striatum)
        pallidum_same_side = con.index("BG-Pa_" + striatum[-1])
        assert con.weights[i, pallidum_same_side] > 0  # row = source: striatum -> pallidum
        assert con.out_degree()[i] <= 3  # few outputs ...
        assert con.in_degree()[i] >= 10  # ... many cortical inputs (column = target)
    pallidum = con.index("BG-Pa_R")
    assert [con.labels[j] for j in np.flatnonzero(con.weights[pallidum])] == ["TM-F_R"]


def test_tvb66_is_human_dmri_and_symmetric():
    con = load_connectome("tvb66")
    assert np.abs(con.weights - con.weights.T).sum() / con.weights.sum() < 1e-4
    assert len(np.unique(con.weights)) > 100  # continuous, not ordinal
    assert con.cortical.all()
    assert "diffusion" in con.provenance


def test_regions_with_role_and_unknown_role():
    con = load_connectome("tvb96")
    pfc = con.regions_with_role("prefrontal")
    assert len(pfc) == 20 and con.labels[pfc[0]].startswith("RM-PFC")
    assert "RM-PFCcl_R" in [con.labels[i] for i in pfc]
    assert len(con.regions_with_role("motor", "premotor")) == 8
    with pytest.raises(ValueError, match="valid roles"):
        con.regions_with_role("cerebellum")


@pytest.mark.parametrize("base_name", CONNECTOME_NAMES)
def test_rewiring_preserves_degrees_and_weights(base_name):
    base = load_connectome(base_name)
    rewired = rewire_degree_preserving(base, seed=3)
    np.testing.assert_array_equal(rewired.out_degree(), base.out_degree())
    np.testing.assert_array_equal(rewired.in_degree(), base.in_degree())
    np.testing.assert_allclose(rewired.weights.sum(axis=1), base.weights.sum(axis=1))  # out-strength
    np.testing.assert_array_equal(np.diag(rewired.weights), np.diag(base.weights))
    assert sorted(rewired.weights[rewired.adjacency()]) == sorted(base.weights[base.adjacency()])
    changed = (rewired.adjacency() != base.adjacency()).sum() / 2 / base.adjacency().sum()
    assert changed > 0.3, "rewiring must actually move edges"
    assert (rewired.tract_lengths_mm[rewired.adjacency()] > 0).all()


def test_random_graph_matches_density_and_weight_distribution():
    base = load_connectome("tvb96")
    rnd = density_matched_random(base, seed=3)
    assert rnd.adjacency().sum() == base.adjacency().sum()
    assert sorted(rnd.weights[rnd.adjacency()]) == sorted(base.weights[base.adjacency()])
    assert not np.array_equal(rnd.out_degree(), base.out_degree())
    assert (rnd.tract_lengths_mm[rnd.adjacency()] > 0).all()


def test_null_models_by_name_are_seeded():
    a = load_connectome("tvb96:rewired:3")
    b = rewire_degree_preserving(load_connectome("tvb96"), seed=3)
    c = load_connectome("tvb96:rewired:4")
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.weights, c.weights)
    assert a.name == "tvb96:rewired:3" and "NULL MODEL" in a.provenance
    r3, r3b = load_connectome("tvb96:random:3"), density_matched_random(load_connectome("tvb96"), seed=3)
    np.testing.assert_array_equal(r3.weights, r3b.weights)


BAD_NAMES = ["tvb97", "TVB96", "tvb96:shuffled:3", "tvb96:rewired", "tvb96:random:-1", ""]


@pytest.mark.parametrize("bad", BAD_NAMES)
def test_unknown_names_raise_listing_valid_ones(bad):
    with pytest.raises(ValueError, match="valid: tvb96, tvb76, tvb66"):
        load_connectome(bad)
