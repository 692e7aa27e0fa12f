"""Helpers that know nothing about MobileNets: crash-safe files, text tables, plotting, and what
this machine's CPU and GPU can do (device, precision). Every other layer may use them."""
