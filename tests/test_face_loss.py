import numpy as np
import pytest
import torch

from dclip_desktop.core.face_loss import FaceIDLoss, center_box, crop_faces, facenet_standardize


def random_embedder():
    from facenet_pytorch import InceptionResnetV1

    torch.manual_seed(0)
    return InceptionResnetV1(pretrained=None, classify=False).eval()


@pytest.fixture(scope="module")
def embedder():
    return random_embedder()


class FixedBoxDetector:
    """Stands in for MTCNN (a collaborator, not the unit under test): one known box per image."""

    margin = 0
    image_size = 160

    def __init__(self, boxes):
        self.boxes = boxes

    def detect(self, pixels):
        assert (
            pixels.ndim == 4
            and pixels.shape[-1] == 3
            and 0 <= float(pixels.min())
            and float(pixels.max()) <= 255
        )
        found = [None if b is None else np.array([b], dtype=np.float32) for b in self.boxes[: len(pixels)]]
        return np.array(found + [None], dtype=object)[:-1], None


def test_standardisation_matches_facenet():
    from facenet_pytorch import fixed_image_standardization

    x = torch.rand(1, 3, 8, 8) * 2 - 1
    torch.testing.assert_close(facenet_standardize(x), fixed_image_standardization((x + 1) * 127.5))


def test_zero_loss_at_source_and_gradients_reach_pixels(embedder):
    face = FaceIDLoss(embedder, detector=None)  # real MTCNN, from the wheel's weights
    x0 = torch.rand(2, 3, 64, 64) * 2 - 1
    face.set_sources(x0)
    assert face.boxes.shape == (2, 4)
    assert not face.detected.any()  # noise has no face: central 80 % square
    torch.testing.assert_close(face.boxes[0], torch.tensor(center_box(64, 64)))
    idx = torch.tensor([1, 0])
    assert abs(float(face(x0[idx], idx))) < 1e-5
    x_hat = (x0[idx] + 0.3 * torch.randn(2, 3, 64, 64)).requires_grad_(True)
    loss = face(x_hat, idx)
    assert loss.dtype == torch.float32 and float(loss.detach()) > 0
    loss.backward()
    assert x_hat.grad is not None and x_hat.grad.abs().sum() > 0
    assert all(p.grad is None and not p.requires_grad for p in embedder.parameters())


def test_detected_boxes_are_stored_and_used(embedder):
    det = FixedBoxDetector([[8.0, 4.0, 40.0, 44.0], None])
    face = FaceIDLoss(embedder, detector=det)
    x0 = torch.rand(2, 3, 48, 48) * 2 - 1
    face.set_sources(x0)
    assert face.detected.tolist() == [True, False]
    torch.testing.assert_close(face.boxes[0], torch.tensor([8.0, 4.0, 40.0, 44.0]))
    x_hat = x0[:1].clone().requires_grad_(True)
    (face(x_hat + 0.1, torch.tensor([0]))).backward()
    g = x_hat.grad[0].abs().sum(0)
    assert g[4:44, 8:40].sum() > 0
    outside = g.clone()
    outside[4:44, 8:40] = 0
    assert outside.sum() == 0  # only the face box influences the loss


def test_crop_resizes_and_is_differentiable():
    x = torch.rand(2, 3, 32, 40, requires_grad=True)
    crops = crop_faces(x, torch.tensor([[0.0, 0.0, 20.0, 30.0], [5.0, 5.0, 25.0, 25.0]]), size=160)
    assert crops.shape == (2, 3, 160, 160)
    crops.sum().backward()
    assert x.grad[0, :, :30, :20].abs().sum() > 0 and x.grad[0, :, 30:, :].abs().sum() == 0


def test_needs_a_real_embedder():
    with pytest.raises(ValueError):
        FaceIDLoss(None)
