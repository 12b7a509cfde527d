"""The paper's test-time variants of a clip: mirrored to right-handed (E8), appearance removed (E8.1)."""

from __future__ import annotations

import numpy as np
from pose_format import Pose


def right_hand_never_seen(pose: Pose) -> bool:
    """The reference's test-time flip criterion: the right hand does not move (never detected)."""
    hand = pose.get_components(["RIGHT_HAND_LANDMARKS"])
    return bool(np.nan_to_num(np.ma.getdata(hand.body.data)).var(axis=0).sum() == 0)


def mirror_if_left_handed(pose: Pose) -> Pose:
    """Mirror to right-handed (pose-format's ``mirror_horizontal``) when the right hand is never seen."""
    if not right_hand_never_seen(pose):
        return pose
    from signclip.pose.holistic_module import pose_format_holistic

    mirrored = pose_format_holistic().mirror_horizontal(pose)
    # mirror_horizontal reflects undetected points too (0 -> width); keep them at 0 like MediaPipe does.
    undetected = mirrored.body.confidence == 0
    data = np.ma.getdata(mirrored.body.data).copy()
    data[undetected] = 0
    mirrored.body.data = np.ma.array(data, mask=np.ma.getmaskarray(mirrored.body.data))
    return mirrored


def anonymize(pose: Pose) -> Pose:
    """Replace the signer's appearance by the mean appearance (the ``pose-anonymization`` package)."""
    from pose_anonymization.appearance import remove_appearance

    return remove_appearance(pose)
