"""Seeded training augmentation, applied to a normalised pose (as the reference does).

- temporal: the reference's speed change: ratio ~ N(1, std), resample with pose-format's linear
  ``interpolate`` to ``round(fps * ratio)`` when the result still fits in ``max_frames``;
- affine2d: rotate / shear / scale of x, y (the maths of pose-format's ``augment2d``, but drawn from the
  caller's generator so that runs are reproducible);
- noise: Gaussian noise on detected points.
Undetected points keep their value (0), so augmentation never invents a hand that was not seen.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pose_format import Pose


@dataclass(frozen=True)
class Augmentation:
    temporal_std: float = 0.2  # std of the speed ratio (E7.2: 0.2); 0 disables
    max_frames: int = 256  # the temporal change is skipped when the result would be longer
    rotation_std: float = 0.0  # radians; the fingerspelling model used 0.2, E7.2 none
    shear_std: float = 0.0
    scale_std: float = 0.0
    noise_std: float = 0.0  # in normalised units (shoulder width 1); the reference's option used 0.001

    def __call__(self, pose: Pose, rng: np.random.Generator) -> Pose:
        if self.temporal_std > 0 and pose.body.data.shape[0] > 1:
            pose = self._temporal(pose, rng)
        if self.rotation_std > 0 or self.shear_std > 0 or self.scale_std > 0:
            self._affine2d(pose, rng)
        if self.noise_std > 0:
            self._noise(pose, rng)
        return pose

    def _temporal(self, pose: Pose, rng: np.random.Generator) -> Pose:
        ratio = rng.normal(1.0, self.temporal_std)
        frames = pose.body.data.shape[0]
        new_fps = round(pose.body.fps * ratio)
        if ratio <= 0 or new_fps <= 0 or frames * ratio >= self.max_frames:
            return pose
        return pose.interpolate(new_fps, kind="linear")

    def _affine2d(self, pose: Pose, rng: np.random.Generator) -> None:
        shear = np.eye(2)
        shear[0, 1] = rng.normal(0.0, self.shear_std) if self.shear_std > 0 else 0.0
        angle = rng.normal(0.0, self.rotation_std) if self.rotation_std > 0 else 0.0
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
        scale = np.diag([1.0 + (rng.normal(0.0, self.scale_std) if self.scale_std > 0 else 0.0), 1.0])
        matrix = shear @ rotation @ scale
        data = np.ma.getdata(pose.body.data).copy()
        detected = pose.body.confidence > 0
        xy = data[..., :2] @ matrix
        data[..., :2] = np.where(detected[..., None], xy, data[..., :2])
        pose.body.data = np.ma.array(data, mask=np.ma.getmaskarray(pose.body.data))

    def _noise(self, pose: Pose, rng: np.random.Generator) -> None:
        data = np.ma.getdata(pose.body.data).copy()
        detected = pose.body.confidence > 0
        data += rng.normal(0.0, self.noise_std, size=data.shape) * detected[..., None]
        pose.body.data = np.ma.array(data, mask=np.ma.getmaskarray(pose.body.data))


# The reference's E7.2 training augmentation, and the fingerspelling model's (augment2d).
TEMPORAL = Augmentation(temporal_std=0.2)
AFFINE2D = Augmentation(temporal_std=0.0, rotation_std=0.2, shear_std=0.2, scale_std=0.2)


def augmented_copies(pose: Pose, copies: int, seed: int, augmentation: Augmentation) -> list[Pose]:
    """``copies`` independently augmented copies of ``pose`` (raw coordinates: the result is a new clip)."""
    out = []
    for k in range(copies):
        copy = Pose(header=pose.header, body=pose.body.copy())
        out.append(augmentation(copy, np.random.default_rng([seed, k])))
    return out
