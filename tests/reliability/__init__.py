"""Kills, damage, full disks, closed terminals."""
