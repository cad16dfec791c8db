import numpy as np
import pytest
import torch

from edgecond.data import DatasetError, load_dataset, load_raw, parse_classes


def test_digits_split_deterministic_and_disjoint():
    a, b = load_dataset("digits", seed=3), load_dataset("digits", seed=3)
    assert torch.equal(a.x_val, b.x_val) and torch.equal(a.y_train, b.y_train)
    c = load_dataset("digits", seed=4)
    assert not torch.equal(a.x_val, c.x_val)  # the seed matters
    raw = load_raw("digits")
    tr, va = a.meta["train_indices"], a.meta["val_indices"]
    assert len(np.intersect1d(tr, va)) == 0
    assert np.array_equal(np.union1d(tr, va), np.arange(len(raw.x_train)))
    assert len(a.x_test) == len(raw.x_test)
    # stratified: every class present in val
    assert set(a.y_val.tolist()) == set(range(10))


def test_normalisation_from_train_only():
    d = load_dataset("digits")
    assert torch.allclose(d.x_train.mean(dim=(0, 2, 3)), torch.zeros(1), atol=1e-4)
    assert torch.allclose(d.x_train.std(dim=(0, 2, 3)), torch.ones(1), atol=1e-3)
    # val/test are normalised with train statistics, so their mean is not forced to 0
    assert abs(float(d.x_val.mean())) > 1e-4 or abs(float(d.x_test.mean())) > 1e-4


def test_class_subset_relabels():
    d = load_dataset("digits", classes=[3, 7])
    assert d.classes == ["3", "7"]
    assert set(d.y_train.tolist()) == {0, 1} and set(d.y_test.tolist()) == {0, 1}
    with pytest.raises(DatasetError, match="out of range"):
        load_dataset("digits", classes=[3, 12])
    with pytest.raises(DatasetError, match="twice"):
        parse_classes("1,1")


def test_unknown_dataset():
    with pytest.raises(DatasetError, match="unknown dataset 'nope'.*digits"):
        load_dataset("nope")
    with pytest.raises(DatasetError, match="unknown dataset"):
        load_dataset("npz:")


def _write_npz(path, **over):
    rng = np.random.default_rng(0)
    arrays = dict(x_train=rng.integers(0, 255, (20, 8, 8, 3), dtype=np.uint8), y_train=np.arange(20) % 2,
                  x_test=rng.integers(0, 255, (6, 8, 8, 3), dtype=np.uint8), y_test=np.arange(6) % 2,
                  classes=np.array(["cat", "dog"]))
    arrays.update(over)
    np.savez(path, **{k: v for k, v in arrays.items() if v is not None})
    return path


def test_npz_loads(tmp_path):
    d = load_dataset(f"npz:{_write_npz(tmp_path / 'ok.npz')}")
    assert d.classes == ["cat", "dog"] and d.image_shape == (3, 8, 8)


def test_npz_missing_file(tmp_path):
    with pytest.raises(DatasetError, match="not found.*x_train"):
        load_dataset(f"npz:{tmp_path / 'absent.npz'}")


def test_npz_missing_key(tmp_path):
    with pytest.raises(DatasetError, match="missing key.*y_test"):
        load_dataset(f"npz:{_write_npz(tmp_path / 'a.npz', y_test=None)}")


def test_npz_misshaped_key(tmp_path):
    with pytest.raises(DatasetError, match="'x_train' has shape"):
        load_dataset(f"npz:{_write_npz(tmp_path / 'a.npz', x_train=np.zeros((20, 8), np.uint8))}")
    with pytest.raises(DatasetError, match="'y_train' has shape"):
        load_dataset(f"npz:{_write_npz(tmp_path / 'b.npz', y_train=np.zeros(5, np.int64))}")
    with pytest.raises(DatasetError, match="dtype float"):
        load_dataset(f"npz:{_write_npz(tmp_path / 'c.npz', x_test=np.zeros((6, 8, 8, 3), np.float32))}")


def test_npz_labels_out_of_range(tmp_path):
    y = np.arange(20) % 2
    y[3] = 5
    with pytest.raises(DatasetError, match="y_train.*outside 0..1"):
        load_dataset(f"npz:{_write_npz(tmp_path / 'a.npz', y_train=y)}")


def test_npz_not_an_npz(tmp_path):
    p = tmp_path / "junk.npz"
    p.write_bytes(b"not a zip")
    with pytest.raises(DatasetError, match="not a readable"):
        load_dataset(f"npz:{p}")


def _write_folder(root, sizes):
    from PIL import Image

    for split in ("train", "test"):
        for ci, cls in enumerate(["a", "b"]):
            (root / split / cls).mkdir(parents=True)
            for i in range(4):
                size = sizes.get((split, cls, i), (8, 8))
                Image.new("RGB", size, (ci * 100, i * 30, 50)).save(root / split / cls / f"{i}.png")
    return root


def test_imagefolder_loads(tmp_path):
    d = load_dataset(f"imagefolder:{_write_folder(tmp_path, {})}")
    assert d.classes == ["a", "b"] and d.image_shape == (3, 8, 8) and len(d.x_test) == 8


def test_imagefolder_mixed_sizes(tmp_path):
    root = _write_folder(tmp_path, {("train", "b", 2): (9, 8)})
    with pytest.raises(DatasetError, match="mixed sizes"):
        load_dataset(f"imagefolder:{root}")


def test_imagefolder_missing_split(tmp_path):
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no 'test/' directory"):
        load_dataset(f"imagefolder:{tmp_path}")


def test_torchvision_missing_offline(tmp_path):
    with pytest.raises(DatasetError, match="mnist not found.*--download"):
        load_dataset("mnist", data_root=str(tmp_path))


def test_cifar_mini_loads(cifar_mini_path):
    d = load_dataset(f"npz:{cifar_mini_path}")
    assert d.image_shape == (3, 32, 32) and d.num_classes == 10 and d.classes[0] == "airplane"
    assert len(d.x_train) == 4500 and len(d.x_val) == 500 and len(d.x_test) == 5000
