"""The Debian packages the hosts tier needs on the machine that boots the guest, with the reason for each.

A leaf: ``invoke setup`` collects them (:func:`labkit.install.apt_packages`) without importing the
guest's machinery, which itself asks ``labkit.install`` for every part's packages.
"""

APT_PACKAGES: dict[str, str] = {
    "qemu-system-x86": "boots the hosts tier's Debian guest with KVM (a real cgroup v2 + systemd host)",
    "qemu-utils": "qemu-img: a copy-on-write overlay per boot over the cached guest image",
    "openssh-client": "ssh into the guest on its host-only network",
    "mmdebstrap": "builds the guest's root file system from Debian's packages",
    "e2fsprogs": "mkfs.ext4 -d: the guest's disk image from that root file system",
}
