//! What to write instead: the hint for each rule of [`rules`](crate::inventory::rules)
//! (the rule's message says what is wrong, these say how to fix it).

pub(super) const H_PREFIX: &str =
    "write the repository prefix as lowercase path segments, e.g. `prefix: metis` or `lab/metis`";
pub(super) const H_AGE: &str = "paste the whole public key: an `age1…` recipient (`age-keygen -y KEYFILE` prints it) or an `ssh-ed25519 …`/`ssh-rsa …` line";
pub(super) const H_SERVER: &str =
    "write the join URL of a live server or the VIP, e.g. `https://10.0.0.10:6443`";
pub(super) const H_DOMAIN: &str = "write the cluster's DNS domain, e.g. `lab.home.arpa`";
pub(super) const H_TZ: &str = "write a name from the tz database, e.g. `Europe/Berlin` or `Etc/UTC` (`timedatectl list-timezones` lists them)";
pub(super) const H_DNS: &str = "write the DNS server's IP address, e.g. `192.168.1.1` or `fd00::1`";
pub(super) const H_SEARCH: &str =
    "write a search domain such as `lab.home.arpa` (lowercase letters, digits, `-` and dots)";
pub(super) const H_JSIZE: &str =
    "write a size journald accepts: a number with K, M, G or T, e.g. `500M` or `1G`";
pub(super) const H_SPAN: &str = "write a systemd time span, e.g. `1month`, `2week` or `30d`";
pub(super) const H_LOGSIZE: &str = "write a size kubelet accepts, e.g. `10Mi` or `100Mi`";
pub(super) const H_LOG_FILES: &str = "set `container_log_max_files` to 2 or more";
pub(super) const H_PERCENT: &str = "write a whole percentage from 0 to 100";
pub(super) const H_USER: &str = "write a Linux user name: lowercase letters, digits, `-` and `_`, starting with a letter, e.g. `ops`";
pub(super) const H_SSH: &str = "paste the whole public key line, e.g. `ssh-ed25519 AAAA… comment` (from ~/.ssh/id_ed25519.pub)";
pub(super) const H_HOST: &str =
    "write a host name of lowercase letters, digits and `-` (at most 63), e.g. `titan-04`";
pub(super) const H_MAC: &str = "write the interface's MAC as six hex octets separated by `:`, e.g. `dc:a6:32:01:02:03` (`ip link` on the node shows it)";
pub(super) const H_IFNAME: &str =
    "write a Linux interface name of at most 15 letters, digits or `-_.`, e.g. `eth0`";
pub(super) const H_CIDR: &str =
    "write the address with its prefix length, e.g. `192.168.1.20/24` or `fd00::20/64`";
pub(super) const H_GATEWAY: &str = "write the gateway's IPv4 address, e.g. `192.168.1.1`";
pub(super) const H_GATEWAY6: &str = "write the gateway's IPv6 address, e.g. `fd00::1` or `fe80::1`";
pub(super) const H_LABEL: &str =
    "write the label as `key=value`, e.g. `lab.example/board=rpi4` (see docs/inventory.md)";
pub(super) const H_TAINT: &str = "write the taint as `key=value:Effect`, e.g. `dedicated=db:NoSchedule` (Effect NoSchedule, PreferNoSchedule or NoExecute)";
pub(super) const H_UUID: &str = "write the filesystem UUID `blkid` shows for the disk on the node, e.g. `6b1f0c3e-93a2-4d7e-9c11-0123456789ab`";
pub(super) const H_MODE: &str =
    "write the mode as octal digits in quotes, e.g. `\"0644\"` or `\"0600\"`";
pub(super) const H_SHA: &str =
    "write the image file's SHA-256 as 64 lowercase hex digits (`sha256sum FILE`)";
pub(super) const H_K3S_VERSION: &str = "write the k3s version the golden images carry, e.g. `v1.32.4+k3s1` (`k3s --version` prints it)";
