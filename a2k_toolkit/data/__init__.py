"""Vox-KP data: clip extraction (video -> 25 fps keypoints + audio), dataset building and training windows."""
