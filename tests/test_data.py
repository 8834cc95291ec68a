from pathlib import Path

import numpy as np
import pytest
import torch

from course_lib import data


def test_shapes_dtypes_and_class_balance(cifar):
    assert cifar.x_train.shape == (50_000, 3, 32, 32) and cifar.x_train.dtype == torch.uint8
    assert cifar.x_test.shape == (10_000, 3, 32, 32) and cifar.x_test.dtype == torch.uint8
    assert torch.bincount(cifar.y_train).tolist() == [5000] * 10
    assert torch.bincount(cifar.y_test).tolist() == [1000] * 10


def test_split_is_fixed_disjoint_and_stratified(cifar):
    train, val = data.train_val_split(cifar.y_train)
    train2, val2 = data.train_val_split(cifar.y_train)
    assert torch.equal(train, train2) and torch.equal(val, val2)
    assert len(train) == 45_000 and len(val) == 5_000
    assert not set(train.tolist()) & set(val.tolist())
    assert torch.bincount(cifar.y_train[val]).tolist() == [500] * 10
    _, other_val = data.train_val_split(cifar.y_train, seed=1)
    assert not torch.equal(val, other_val)


def test_stratified_subset_is_seeded(cifar):
    a = data.stratified_subset(cifar.y_test, 20, seed=3)
    assert torch.equal(a, data.stratified_subset(cifar.y_test, 20, seed=3))
    assert not torch.equal(a, data.stratified_subset(cifar.y_test, 20, seed=4))
    assert torch.bincount(cifar.y_test[a]).tolist() == [20] * 10
    with pytest.raises(ValueError, match="asked 2000"):
        data.stratified_subset(cifar.y_test, 2000, seed=0)


def test_crop_flip_returns_windows_of_the_padded_image(cifar):
    images = cifar.x_train[:64]
    out = data.random_crop_flip(images, torch.Generator().manual_seed(0))
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for i in range(len(images)):
        windows = [padded[i, :, dy : dy + 32, dx : dx + 32] for dy in range(9) for dx in range(9)]
        assert any(torch.equal(out[i], w) or torch.equal(out[i], w.flip(2)) for w in windows)
    assert not torch.equal(out, images)


def test_augmentation_and_shuffle_are_deterministic_per_seed_and_epoch(cifar):
    def first_batch(seed, epoch):
        loader = data.TensorLoader(
            cifar.x_train[:512], cifar.y_train[:512], 64, shuffle=True, augment=True, seed=seed
        )
        loader.set_epoch(epoch)
        return next(iter(loader))

    x1, y1 = first_batch(0, 0)
    x2, y2 = first_batch(0, 0)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, first_batch(0, 1)[0])
    assert not torch.equal(x1, first_batch(1, 0)[0])


def test_normalized_batches(cifar):
    loader = data.subset_loader(cifar, "test", torch.arange(1000), batch_size=1000)
    x, y = next(iter(loader))
    assert x.dtype == torch.float32 and x.shape == (1000, 3, 32, 32)
    assert x.mean(dim=(0, 2, 3)).abs().max() < 0.1
    assert len(loader) == 1


def test_make_loaders_subsets(cifar):
    loaders = data.make_loaders(cifar, data.DataSettings(10, 5, 3, batch_size=32))
    assert len(loaders.train.labels) == 100 and len(loaders.val.labels) == 50
    assert len(loaders.test.labels) == 30
    assert len(loaders.train) == 3  # drop_last


def test_data_settings_reject_nonsense():
    with pytest.raises(ValueError, match="train_per_class"):
        data.DataSettings(train_per_class=0)
    with pytest.raises(ValueError, match="batch_size"):
        data.DataSettings(batch_size=0)


def test_corrupt_offline_file_is_a_clear_error(tmp_path: Path):
    np.savez_compressed(tmp_path / "cifar10.npz", x_train=np.zeros((1, 32, 32, 3), np.uint8))
    with pytest.raises(data.DataError, match=data.NPZ_SHA256) as error:
        data.load_cifar10(tmp_path)
    assert "cifar10.npz" in str(error.value) and "corrupt" in str(error.value)


def test_truncated_offline_file_is_a_clear_error(tmp_path: Path):
    source = data.data_dir() / "cifar10.npz"
    (tmp_path / "cifar10.npz").write_bytes(source.read_bytes()[: 1 << 20])
    with pytest.raises(data.DataError, match="truncated or corrupt"):
        data.load_cifar10(tmp_path)


def test_missing_data_without_download_is_a_clear_error(tmp_path: Path):
    with pytest.raises(data.DataError, match=data.DATA_DIR_ENV):
        data.load_cifar10(tmp_path, download=False)


def test_data_dir_follows_the_environment(monkeypatch, tmp_path: Path):
    monkeypatch.setenv(data.DATA_DIR_ENV, str(tmp_path))
    assert data.data_dir() == tmp_path
    monkeypatch.delenv(data.DATA_DIR_ENV)
    assert data.data_dir().name == "efficient-dl-course"
