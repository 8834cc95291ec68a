import pytest
import torch

from course_lib import data, models, train


@pytest.fixture(scope="module")
def small_loaders(cifar):
    settings = data.DataSettings(100, 20, 20, batch_size=100)
    return data.make_loaders(cifar, settings, seed=0, channels_last=False)


def tiny_model() -> torch.nn.Module:
    train.seed_everything(0)
    return models.BaselineCNN(widths=(8, 16, 16), hidden=32)


CONFIG = train.TrainConfig(epochs=3, lr=0.05, channels_last=False, autocast=False)


@pytest.mark.slow
def test_loss_falls_on_real_data(small_loaders):
    history = train.fit(
        tiny_model(), small_loaders.train, CONFIG, small_loaders.val, progress=False
    )
    assert len(history.train_loss) == 3 and len(history.val_accuracy) == 3
    assert history.train_loss[-1] < history.train_loss[0] - 0.1
    assert history.val_accuracy[-1] > 0.15  # chance is 0.10


@pytest.mark.slow
def test_same_seed_gives_same_weights(small_loaders):
    config = train.TrainConfig(epochs=1, lr=0.05, channels_last=False, autocast=False)
    a, b = tiny_model(), tiny_model()
    train.fit(a, small_loaders.train, config, progress=False)
    train.fit(b, small_loaders.train, config, progress=False)
    for pa, pb in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


class Interrupted(Exception):
    pass


@pytest.mark.slow
def test_resume_after_interruption_gives_the_same_weights(small_loaders, tmp_path):
    reference = tiny_model()
    train.fit(reference, small_loaders.train, CONFIG, progress=False)

    def crash_after_first_epoch(epoch, history):
        if epoch == 0:
            raise Interrupted

    state = tmp_path / "state.pt"
    with pytest.raises(Interrupted):
        train.fit(
            tiny_model(),
            small_loaders.train,
            CONFIG,
            checkpoint=state,
            progress=False,
            on_epoch_end=crash_after_first_epoch,
        )
    assert state.exists() and not (tmp_path / "state.pt.tmp").exists()
    resumed = tiny_model()  # a fresh process would rebuild the model from scratch
    history = train.fit(resumed, small_loaders.train, CONFIG, checkpoint=state, progress=False)
    assert len(history.train_loss) == 3
    for pa, pb in zip(reference.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(pa, pb)


def test_checkpoint_of_another_config_is_refused_and_kept(small_loaders, tmp_path):
    state = tmp_path / "state.pt"
    train.fit(
        tiny_model(),
        small_loaders.train,
        train.TrainConfig(epochs=1, channels_last=False),
        checkpoint=state,
        progress=False,
    )
    before = state.read_bytes()
    with pytest.raises(ValueError, match="different TrainConfig"):
        train.fit(tiny_model(), small_loaders.train, CONFIG, checkpoint=state, progress=False)
    assert state.read_bytes() == before


def test_invalid_config_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown schedule"):
        train.TrainConfig(schedule="linear")
    with pytest.raises(ValueError, match="epochs"):
        train.TrainConfig(epochs=0)
