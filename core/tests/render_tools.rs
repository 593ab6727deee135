//! The rendered seed of every node, checked with the real tools that will read
//! it: cloud-init's schema check and network converter, netplan's generator,
//! systemd-analyze and shellcheck. Plus the keys Metis relies on, which
//! cloud-init 22.4's schema (types only) does not check.

mod common;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use common::*;
use metis_core::inventory::{Inventory, Os, Role};
use metis_core::render::{self, paths, Rendered};

/// Every node of the example lab and the variant node, rendered.
fn all_nodes() -> Vec<(Inventory, Rendered, Option<tempfile::TempDir>)> {
    every_node()
        .into_iter()
        .map(|(inv, name, keep)| {
            let r = render::render(&inv, &name).unwrap();
            (inv, r, keep)
        })
        .collect()
}

fn write(path: &Path, bytes: &[u8], mode: u32) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn user_data_passes_cloud_init_schema_and_has_the_keys_metis_relies_on() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("user-data");
        let ud = &r.seed[paths::SEED_USER_DATA];
        write(&file, ud, 0o644);
        run_ok(
            Command::new("cloud-init")
                .args(["schema", "--config-file"])
                .arg(&file),
        );

        assert!(ud.starts_with(b"#cloud-config\n"), "{}", r.node);
        let v = yaml(ud);
        assert_eq!(v["hostname"], node.hostname.as_str());
        assert_eq!(v["fqdn"], node.fqdn.as_str());
        assert_eq!(v["preserve_hostname"], false);
        assert_eq!(v["manage_etc_hosts"], true);
        assert_eq!(v["ssh_pwauth"], false);
        assert_eq!(v["disable_root"], true);
        assert_eq!(v["ssh_deletekeys"], false, "host keys must survive");
        assert!(v.get("ssh_keys").is_none(), "host keys never in user-data");
        assert_eq!(v["timezone"], node.settings.timezone.as_str());
        assert_eq!(
            v["ntp"]["servers"],
            serde_json::json!(node.settings.ntp),
            "{}",
            r.node
        );
        let users = v["users"].as_array().unwrap();
        assert_eq!(users.len(), node.settings.users.len());
        for (u, want) in users.iter().zip(&node.settings.users) {
            assert_eq!(u["name"], want.name.as_str());
            assert_eq!(
                u["ssh_authorized_keys"],
                serde_json::json!(want.ssh_authorized_keys)
            );
            assert_eq!(u.get("sudo").is_some(), want.sudo);
            assert!(u.get("passwd").is_none() && u.get("plain_text_passwd").is_none());
        }

        // Phase 1 from bootcmd, from the seed partition found as the class names it.
        let bootcmd = v["bootcmd"][0].as_str().expect("bootcmd[0] is a script");
        let seed = &inv.class_of(node).seed.selector;
        assert!(
            bootcmd.contains(&format!("{}'{}'", seed.device_dir(), seed.value())),
            "{bootcmd}"
        );
        assert!(bootcmd.contains(&format!(
            "sh \"$mnt/{}\" \"$mnt\" '{}'",
            paths::SEED_SECRETS_PHASE,
            r.node
        )));
        // Phase 2 from runcmd, the k3s phase written by write_files.
        assert_eq!(
            v["runcmd"],
            serde_json::json!([["sh", paths::K3S_PHASE]]),
            "{}",
            r.node
        );

        let files = write_files(ud);
        let k3s_phase = &files[paths::K3S_PHASE];
        assert_eq!(k3s_phase.0, "0755");
        assert_eq!(k3s_phase.2, render::K3S_PHASE, "written verbatim");
        assert!(files.contains_key(paths::JOURNALD_DROPIN));
        assert!(files.contains_key(paths::NODE_ENV));
        assert_eq!(files.contains_key(paths::FSTAB), !node.disks.is_empty());
        assert_eq!(
            files.contains_key(paths::K3S_CONFIG),
            node.role != Role::None
        );
        assert!(
            !files.contains_key(paths::REGISTRIES),
            "registries.yaml only from the bundle"
        );
        for p in files.keys() {
            assert!(
                !p.starts_with("/etc/ssh/ssh_host_")
                    && p != paths::K3S_TOKEN
                    && p != paths::NODE_PASSWORD,
                "{}: secret path {p} in write_files",
                r.node
            );
        }
        for (i, _) in node.hooks.commands.iter().enumerate() {
            let p = format!("{}/{:03}.sh", paths::HOOKS_DIR, i + 1);
            assert_eq!(files[&p].0, "0755", "{p}");
        }
        for hf in &node.hooks.files {
            match &hf.source {
                metis_core::inventory::HookFileSource::Content(c) => {
                    assert_eq!(&files[&hf.path].2, c);
                    assert_eq!(files[&hf.path].0, hf.mode);
                }
                metis_core::inventory::HookFileSource::Secret(_) => {
                    assert!(
                        !files.contains_key(&hf.path),
                        "secret hook file in user-data"
                    )
                }
            }
        }
    }
}

#[test]
fn meta_data_says_instance_id_with_a_hyphen() {
    for (inv, r, _keep) in all_nodes() {
        let v = yaml(&r.seed[paths::SEED_META_DATA]);
        // NoCloud reads `instance-id`; the vendor seeds' `instance_id` is ignored.
        assert_eq!(v["instance-id"], r.instance_id.as_str());
        assert!(v.get("instance_id").is_none());
        assert!(r.instance_id.starts_with(&format!("metis-{}-", r.node)));
        assert_eq!(v["local-hostname"], inv.nodes[&r.node].hostname.as_str());
    }
}

#[test]
fn k3s_config_and_kubelet_limits_follow_the_inventory() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        if node.role == Role::None {
            assert!(!files.contains_key(paths::K3S_CONFIG));
            assert!(!files.contains_key(paths::KUBELET_DROPIN));
            continue;
        }
        let (mode, owner, config) = &files[paths::K3S_CONFIG];
        assert_eq!((mode.as_str(), owner.as_str()), ("0600", "root:root"));
        let c = yaml(config.as_bytes());
        assert_eq!(c["node-name"], r.node.as_str());
        assert_eq!(c["token-file"], paths::K3S_TOKEN);
        assert!(c.get("token").is_none() && c.get("cluster-init").is_none());
        let server = c["server"].as_str().unwrap();
        assert!(inv.lab.cluster.servers.iter().any(|s| s == server));
        let ip = node.primary_ipv4().unwrap().to_string();
        assert!(c["node-ip"].as_str().unwrap().starts_with(&ip));
        assert!(
            !server.contains(&format!("//{ip}:")),
            "{} joins itself",
            r.node
        );
        let labels: Vec<&str> = c["node-label"]
            .as_array()
            .map(|a| a.iter().map(|l| l.as_str().unwrap()).collect())
            .unwrap_or_default();
        assert_eq!(labels, node.labels);
        let taints: Vec<&str> = c["node-taint"]
            .as_array()
            .map(|a| a.iter().map(|l| l.as_str().unwrap()).collect())
            .unwrap_or_default();
        let want: Vec<String> = node.taints.iter().map(|t| t.to_string()).collect();
        assert_eq!(taints, want);
        for (k, v) in &node.settings.k3s_extra_config {
            assert_eq!(c[k.as_str()], v.as_str());
        }

        let k = &node.settings.kubelet;
        if inv.lab.cluster.k3s_version.has_kubelet_conf_d() {
            assert!(c.get("kubelet-arg").is_none());
            let (mode, _, conf) = &files[paths::KUBELET_DROPIN];
            assert_eq!(mode, "0644");
            let d = yaml(conf.as_bytes());
            assert_eq!(d["kind"], "KubeletConfiguration");
            assert_eq!(d["apiVersion"], "kubelet.config.k8s.io/v1beta1");
            assert_eq!(d["containerLogMaxSize"], k.container_log_max_size.as_str());
            assert_eq!(d["containerLogMaxFiles"], k.container_log_max_files);
            assert_eq!(d["imageGCHighThresholdPercent"], k.image_gc_high_threshold);
            assert_eq!(d["imageGCLowThresholdPercent"], k.image_gc_low_threshold);
        } else {
            assert!(!files.contains_key(paths::KUBELET_DROPIN));
            assert_eq!(
                c["kubelet-arg"],
                serde_json::json!([
                    format!("container-log-max-size={}", k.container_log_max_size),
                    format!("container-log-max-files={}", k.container_log_max_files),
                    format!("image-gc-high-threshold={}", k.image_gc_high_threshold),
                    format!("image-gc-low-threshold={}", k.image_gc_low_threshold),
                ])
            );
        }
    }
}

#[test]
fn a_server_joins_the_first_other_server_and_never_itself() {
    let (_tmp, dir) = copy_example(|dir| {
        replace(
            &dir.join("metis.yaml"),
            "    - https://192.168.22.10:6443",
            "    - https://192.168.22.11:6443\n    - https://titan-0b.lab.home.arpa:6443\n    - https://192.168.22.10:6443",
        );
    });
    let inv = metis_core::lab::load(&dir).unwrap();
    let server = |node: &str| {
        let r = render::render(&inv, node).unwrap();
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        yaml(files[paths::K3S_CONFIG].2.as_bytes())["server"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(server("titan-0a"), "https://titan-0b.lab.home.arpa:6443");
    assert_eq!(server("titan-0b"), "https://192.168.22.11:6443");
    assert_eq!(server("titan-0c"), "https://192.168.22.11:6443");
    assert_eq!(server("titan-04"), "https://192.168.22.11:6443");
}

#[test]
fn network_config_passes_netplan_generate_with_the_static_address_on_the_right_mac() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let root = tempfile::tempdir().unwrap();
        write(
            &root.path().join("etc/netplan/50-cloud-init.yaml"),
            &r.seed[paths::SEED_NETWORK_CONFIG],
            0o600,
        );
        run_ok(
            Command::new("netplan")
                .args(["generate", "--root-dir"])
                .arg(root.path()),
        );
        let netdir = root.path().join("run/systemd/network");
        for iface in &node.interfaces {
            let network =
                std::fs::read_to_string(netdir.join(format!("10-netplan-{}.network", iface.name)))
                    .unwrap_or_else(|e| {
                        panic!("{}: no networkd file for {}: {e}", r.node, iface.name)
                    });
            let link =
                std::fs::read_to_string(netdir.join(format!("10-netplan-{}.link", iface.name)))
                    .unwrap();
            let mac_match = format!("MACAddress={}", iface.mac.to_ascii_lowercase());
            assert!(network.contains(&mac_match), "{network}");
            assert!(link.contains(&mac_match), "{link}");
            assert!(link.contains(&format!("Name={}", iface.name)), "{link}");
            for a in &iface.addresses {
                assert!(network.contains(&format!("Address={a}\n")), "{network}");
            }
            if let Some(gw) = iface.gateway4 {
                assert!(
                    network.contains(&format!("Destination=0.0.0.0/0\nGateway={gw}\n")),
                    "{network}"
                );
            }
            if let Some(gw) = iface.gateway6 {
                assert!(
                    network.contains(&format!("Destination=::/0\nGateway={gw}\n")),
                    "{network}"
                );
            }
            for d in &iface.dns {
                assert!(network.contains(&format!("DNS={d}")), "{network}");
            }
            if !iface.search.is_empty() {
                assert!(
                    network.contains(&format!("Domains={}", iface.search.join(" "))),
                    "{network}"
                );
            }
            assert_eq!(network.contains("DHCP=ipv4"), iface.dhcp4, "{network}");
        }
    }
}

/// On Debian 12 and Armbian (cloud-init 22.4, no netplan renderer)
/// cloud-init converts network-config itself; it must accept it.
#[test]
fn network_config_converts_with_cloud_init_for_networkd_and_ifupdown() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("network-config");
        write(&input, &r.seed[paths::SEED_NETWORK_CONFIG], 0o644);
        for (kind, file) in [
            (
                "networkd",
                format!(
                    "etc/systemd/network/10-cloud-init-{}.network",
                    node.interfaces[0].name
                ),
            ),
            ("eni", "etc/network/interfaces.d/50-cloud-init".to_string()),
        ] {
            let out = tmp.path().join(kind);
            run_ok(
                Command::new("cloud-init")
                    .args([
                        "devel",
                        "net-convert",
                        "-k",
                        "yaml",
                        "-D",
                        "debian",
                        "-O",
                        kind,
                        "-p",
                    ])
                    .arg(&input)
                    .arg("-d")
                    .arg(&out),
            );
            let text = std::fs::read_to_string(out.join(&file))
                .unwrap_or_else(|e| panic!("{}: {kind}: {file}: {e}", r.node));
            let a = node.interfaces[0].addresses[0];
            assert!(text.contains(&a.to_string()), "{}: {kind}:\n{text}", r.node);
            let gw = node.interfaces[0].gateway4.unwrap().to_string();
            assert!(text.contains(&gw), "{}: {kind}:\n{text}", r.node);
        }
    }
}

#[test]
fn rendered_units_and_dropins_pass_systemd_analyze_verify() {
    let mut checked = 0;
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        let Some(unit) = (match node.role {
            Role::Server => Some("k3s.service"),
            Role::Agent => Some("k3s-agent.service"),
            Role::None => None,
        }) else {
            continue;
        };
        let dropin = paths::k3s_unit_dropin(unit);
        let longhorn: Vec<&str> = node
            .disks
            .iter()
            .filter(|d| d.longhorn)
            .map(|d| d.mount.as_str())
            .collect();
        assert_eq!(
            files.contains_key(&dropin),
            !longhorn.is_empty(),
            "{}",
            r.node
        );
        let Some((mode, _, content)) = files.get(&dropin) else {
            continue;
        };
        assert_eq!(mode, "0644");
        assert!(
            content.contains(&format!(
                "[Unit]\nRequiresMountsFor={}\n",
                longhorn.join(" ")
            )),
            "{content}"
        );
        // The unit as the k3s installer writes it (ExecStart stubbed, as the
        // binary is not here), with the drop-in beside it.
        let dir = tempfile::tempdir().unwrap();
        write(
            &dir.path().join(unit),
            b"[Unit]\nDescription=Lightweight Kubernetes\nWants=network-online.target\n\
              After=network-online.target\n\n[Service]\nType=notify\nExecStart=/bin/true\n\
              KillMode=process\nDelegate=yes\nRestart=always\n\n[Install]\nWantedBy=multi-user.target\n",
            0o644,
        );
        let (_, name) = dropin.rsplit_once('/').unwrap();
        write(
            &dir.path().join(format!("{unit}.d")).join(name),
            content.as_bytes(),
            0o644,
        );
        let out = run_ok(
            Command::new("systemd-analyze")
                .args(["verify", unit])
                .env("SYSTEMD_UNIT_PATH", format!("{}:", dir.path().display())),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.trim().is_empty(),
            "{}: systemd-analyze verify:\n{stderr}",
            r.node
        );
        checked += 1;
    }
    assert!(checked >= 5, "the Longhorn nodes were checked ({checked})");
}

/// The unit a build-time drop-in extends, as its vendor ships it (ExecStart
/// stubbed: the program is not on this machine).
fn vendor_unit(unit: &str) -> String {
    match unit {
        // cloud-init's own unit (Debian's cloud-init 22.4, trimmed to what
        // verify reads).
        "cloud-init-local.service" => {
            "[Unit]\nDescription=Initial cloud-init job (pre-networking)\n\
             DefaultDependencies=no\nWants=network-pre.target\nAfter=systemd-remount-fs.service\n\
             Before=network-pre.target\nBefore=shutdown.target\nConflicts=shutdown.target\n\
             RequiresMountsFor=/var/lib/cloud\n\n[Service]\nType=oneshot\nExecStart=/bin/true\n\
             RemainAfterExit=yes\nTimeoutSec=0\n\n[Install]\nWantedBy=cloud-init.target\n"
                .to_string()
        }
        "armbian-firstrun.service" => {
            std::fs::read_to_string(armbian_fixture("armbian-firstrun.service"))
                .unwrap()
                .replace(
                    "ExecStart=/usr/lib/armbian/armbian-firstrun start",
                    "ExecStart=/bin/true",
                )
        }
        other => panic!("no stub for {other}: add the vendor's unit here"),
    }
}

/// The drop-ins the image engine writes into the root filesystem at build time
/// (cloud-init-local ordering, Armbian's first-run), each verified beside the
/// unit it extends.
#[test]
fn build_time_dropins_pass_systemd_analyze_verify() {
    let mut checked = BTreeMap::new();
    for (_inv, r, _keep) in all_nodes() {
        for f in &r.root_files {
            let Some((dir, name)) = f.path.rsplit_once('/') else {
                continue;
            };
            let Some(unit) = dir
                .strip_prefix("/etc/systemd/system/")
                .and_then(|d| d.strip_suffix(".d"))
            else {
                continue;
            };
            assert_eq!(f.mode, 0o644, "{}: {}", r.node, f.path);
            let tmp = tempfile::tempdir().unwrap();
            write(&tmp.path().join(unit), vendor_unit(unit).as_bytes(), 0o644);
            write(
                &tmp.path().join(format!("{unit}.d")).join(name),
                &f.content,
                0o644,
            );
            let out = run_ok(
                Command::new("systemd-analyze")
                    .args(["verify", unit])
                    .env("SYSTEMD_UNIT_PATH", format!("{}:", tmp.path().display())),
            );
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.trim().is_empty(),
                "{}: {}: systemd-analyze verify:\n{stderr}",
                r.node,
                f.path
            );
            *checked.entry(f.path.clone()).or_insert(0) += 1;
        }
    }
    for dropin in [
        paths::CLOUD_INIT_LOCAL_DROPIN,
        paths::ARMBIAN_FIRSTRUN_DROPIN,
    ] {
        assert!(
            checked.contains_key(dropin),
            "{dropin} was checked: {checked:?}"
        );
    }
}

/// systemd-analyze cannot verify journald.conf (it is not a unit), so check
/// its shape: one [Journal] section with the three keys and the inventory's
/// values, which the loader already validated as journald sizes and spans.
#[test]
fn journald_dropin_has_the_inventory_limits() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        let (mode, _, conf) = &files[paths::JOURNALD_DROPIN];
        assert_eq!(mode, "0644");
        let lines: Vec<&str> = conf.lines().filter(|l| !l.starts_with('#')).collect();
        let j = &node.settings.journald;
        assert_eq!(
            lines,
            [
                "[Journal]".to_string(),
                format!("SystemMaxUse={}", j.system_max_use),
                format!("SystemKeepFree={}", j.system_keep_free),
                format!("MaxRetentionSec={}", j.max_retention),
            ]
        );
    }
}

#[test]
fn fstab_lines_mount_by_uuid_with_nofail_and_the_device_timeout() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        let Some((_, _, fstab)) = files.get(paths::FSTAB) else {
            assert!(node.disks.is_empty());
            continue;
        };
        let lines: Vec<Vec<&str>> = fstab
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert_eq!(lines.len(), node.disks.len());
        for (f, d) in lines.iter().zip(&node.disks) {
            assert_eq!(f.len(), 6, "{f:?}");
            assert_eq!(f[0], format!("UUID={}", d.uuid));
            assert_eq!(f[1], d.mount);
            assert_eq!(f[2], d.filesystem);
            let opts: Vec<&str> = f[3].split(',').collect();
            assert!(opts.contains(&"nofail"), "{f:?}");
            let timeout = format!(
                "x-systemd.device-timeout={}s",
                node.settings.disk_timeout_sec
            );
            assert!(opts.contains(&timeout.as_str()), "{f:?}");
            for o in &d.options {
                assert!(opts.contains(&o.as_str()), "{f:?}");
            }
        }
    }
}

#[test]
fn both_phases_and_the_bootcmd_pass_shellcheck() {
    let tmp = tempfile::tempdir().unwrap();
    let mut scripts = BTreeMap::new();
    for (_inv, r, _keep) in all_nodes() {
        let files = write_files(&r.seed[paths::SEED_USER_DATA]);
        let v = yaml(&r.seed[paths::SEED_USER_DATA]);
        let bootcmd = format!("#!/bin/sh\n{}", v["bootcmd"][0].as_str().unwrap());
        scripts.insert(format!("{}-bootcmd.sh", r.node), bootcmd.into_bytes());
        scripts.insert(
            format!("{}-secrets-phase.sh", r.node),
            r.seed[paths::SEED_SECRETS_PHASE].clone(),
        );
        scripts.insert(
            format!("{}-k3s-phase.sh", r.node),
            files[paths::K3S_PHASE].2.clone().into_bytes(),
        );
    }
    let mut args = Vec::new();
    for (name, body) in &scripts {
        let p = tmp.path().join(name);
        write(&p, body, 0o755);
        args.push(p);
    }
    run_ok(
        Command::new("shellcheck")
            .args(["--shell=sh", "--severity=style"])
            .args(&args),
    );
}

#[test]
fn armbian_nodes_keep_their_host_keys_and_mac() {
    for (inv, r, _keep) in all_nodes() {
        let node = &inv.nodes[&r.node];
        if inv.class_of(node).os != Os::Armbian {
            assert!(
                r.root_edits.is_empty() && r.seed_edits.is_empty(),
                "{}",
                r.node
            );
            continue;
        }
        // armbian-firstrun regenerates host keys unless told not to …
        let firstrun = &r.root_edits[0];
        assert_eq!(firstrun.path, "/etc/default/armbian-firstrun");
        let edited = firstrun.apply(Some(
            b"# configuration values for the armbian-firstrun service\nOPENSSHD_REGENERATE_HOST_KEYS=true\n",
        ));
        assert!(String::from_utf8(edited)
            .unwrap()
            .ends_with("\nOPENSSHD_REGENERATE_HOST_KEYS=false\n"));
        // … and randomises ethaddr in armbianEnv.txt.
        let env = &r.seed_edits[0];
        assert_eq!(
            (env.path.as_str(), env.key.as_str()),
            ("armbianEnv.txt", "ethaddr")
        );
        let mac = node.interfaces[0].mac.to_ascii_lowercase();
        assert_eq!(env.value, mac);
        for version in ["current", "2024"] {
            assert_mac_survives_armbian_firstrun(&r, env, &mac, version);
        }
    }
}

fn armbian_fixture(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/armbian")
        .join(name)
}

fn ethaddr_lines(env: &str) -> Vec<&str> {
    env.lines().filter(|l| l.starts_with("ethaddr=")).collect()
}

/// Runs the real armbian-firstrun lines that randomise the MAC (vendored in
/// tests/fixtures/armbian, both the current and the 2024 form) on the
/// build-time armbianEnv.txt, then the rendered drop-in's command, in a temp
/// root: the node's MAC must be what the next boot reads.
fn assert_mac_survives_armbian_firstrun(
    r: &Rendered,
    env: &render::KeyValueEdit,
    mac: &str,
    version: &str,
) {
    let root = tempfile::tempdir().unwrap();
    let env_file = root
        .path()
        .join(paths::ARMBIAN_BOOT_ENV.trim_start_matches('/'));
    // armbianEnv.txt as an Armbian image ships it, with the build-time edit.
    let shipped = "verbosity=1\nbootlogo=false\nconsole=both\nethaddr=02:11:22:33:44:55\n\
                   overlay_prefix=bcm2711\nrootdev=UUID=0b7c0a5e-0d3b-4e9c-9a53-3f0c5c3e0a01\n";
    let built = String::from_utf8(env.apply(Some(shipped.as_bytes()))).unwrap();
    assert_eq!(ethaddr_lines(&built), [format!("ethaddr={mac}")]);
    write(&env_file, built.as_bytes(), 0o644);

    run_ok(
        Command::new("bash")
            .arg(armbian_fixture("armbian-firstrun-mac.bash"))
            .arg(version)
            .env("ROOT", root.path()),
    );
    let after_firstrun = std::fs::read_to_string(&env_file).unwrap();
    assert_ne!(
        ethaddr_lines(&after_firstrun),
        [format!("ethaddr={mac}")],
        "{}: armbian-firstrun ({version}) leaves ethaddr alone; the fixture is not the real script",
        r.node
    );

    let dropin = r
        .root_files
        .iter()
        .find(|f| f.path == paths::ARMBIAN_FIRSTRUN_DROPIN)
        .unwrap_or_else(|| panic!("{}: no armbian-firstrun drop-in", r.node));
    assert_eq!(dropin.mode, 0o644);
    let text = String::from_utf8(dropin.content.clone()).unwrap();
    // The unit is Type=simple with RemainAfterExit=yes; only as a oneshot
    // without RemainAfterExit does ExecStopPost run right after the script.
    for line in ["[Service]", "Type=oneshot", "RemainAfterExit=no"] {
        assert!(
            text.lines().any(|l| l == line),
            "{}: {line}:\n{text}",
            r.node
        );
    }
    let command = text
        .lines()
        .find_map(|l| l.strip_prefix("ExecStopPost=-"))
        .unwrap_or_else(|| panic!("{}: no ExecStopPost=:\n{text}", r.node));
    assert!(command.contains(paths::ARMBIAN_BOOT_ENV), "{command}");
    // systemd splits the command line as sh does for these quotes.
    let command = command.replace(paths::ARMBIAN_BOOT_ENV, &env_file.display().to_string());
    run_ok(Command::new("sh").args(["-c", &command]));
    let next_boot = std::fs::read_to_string(&env_file).unwrap();
    assert_eq!(
        ethaddr_lines(&next_boot),
        [format!("ethaddr={mac}")],
        "{}: after armbian-firstrun ({version}):\n{next_boot}",
        r.node
    );
    let others = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with("ethaddr="))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(others(&next_boot), others(&built), "{}", r.node);
}

#[test]
fn machine_id_is_written_at_build_time_and_stable() {
    let inv = example();
    let mut seen = BTreeMap::new();
    for name in inv.nodes.keys() {
        let r = render::render(&inv, name).unwrap();
        assert_eq!(r.root_files[0].path, "/etc/machine-id");
        assert_eq!(
            r.root_files[0].content,
            format!("{}\n", r.machine_id).into_bytes()
        );
        assert_eq!(r.machine_id.len(), 32);
        assert!(r
            .machine_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(
            seen.insert(r.machine_id.clone(), name).is_none(),
            "machine-id shared"
        );
        // Not derived at first boot: no seed file writes it.
        for (path, bytes) in &r.seed {
            assert!(
                !String::from_utf8_lossy(bytes).contains(&r.machine_id),
                "{name}: {path} carries the machine-id"
            );
        }
    }
}

#[test]
fn rendering_is_deterministic_and_the_instance_id_follows_the_seed() {
    let inv = example();
    for name in inv.nodes.keys() {
        assert_eq!(
            render::render(&inv, name).unwrap(),
            render::render(&inv, name).unwrap()
        );
    }
    // Another inventory loaded from the same files: same bytes.
    let (_tmp, dir) = copy_example(|_| {});
    let copy = metis_core::lab::load(&dir).unwrap();
    assert_eq!(
        render::render(&inv, "titan-13").unwrap(),
        render::render(&copy, "titan-13").unwrap()
    );
    // A change that touches the node changes its instance-id; one that does
    // not leaves the node's card byte-identical.
    let (_tmp2, dir2) = copy_example(|dir| {
        replace(
            &dir.join("nodes/titan-13.yaml"),
            "lab.home.arpa/board=rpi4",
            "lab.home.arpa/board=rpi4b",
        );
    });
    let changed = metis_core::lab::load(&dir2).unwrap();
    assert_ne!(
        render::render(&inv, "titan-13").unwrap().instance_id,
        render::render(&changed, "titan-13").unwrap().instance_id
    );
    assert_eq!(
        render::render(&inv, "titan-15").unwrap(),
        render::render(&changed, "titan-15").unwrap()
    );
}

#[test]
fn server_rejoin_commands_only_for_servers() {
    let inv = example();
    for (name, node) in &inv.nodes {
        let r = render::render(&inv, name).unwrap();
        match node.role {
            Role::Server => assert_eq!(
                r.server_rejoin_commands.unwrap(),
                [
                    format!("kubectl annotate node {name} etcd.k3s.cattle.io/remove=true"),
                    format!("kubectl delete node {name}"),
                ]
            ),
            _ => assert!(r.server_rejoin_commands.is_none()),
        }
    }
}

#[test]
fn unknown_node_is_an_error_naming_it() {
    let err = render::render(&example(), "titan-404").unwrap_err();
    assert!(err.to_string().contains("titan-404"), "{err}");
}

/// Ubuntu's and Armbian's seed is the boot partition their fstab also
/// mounts; cloud-init's local stage must wait for that mount or it may
/// miss the seed and bring the node up on DHCP. Debian cloud images keep
/// the seed on an unmounted CIDATA partition.
#[test]
fn cloud_init_local_waits_for_the_images_mounts_where_the_seed_is_mounted() {
    let inv = example();
    for (node, dropin) in [("titan-04", true), ("titan-13", true), ("titan-db", false)] {
        let rendered = render::render(&inv, node).unwrap();
        let file = rendered
            .root_files
            .iter()
            .find(|f| f.path == paths::CLOUD_INIT_LOCAL_DROPIN);
        assert_eq!(file.is_some(), dropin, "{node}");
        if let Some(f) = file {
            let text = String::from_utf8(f.content.clone()).unwrap();
            assert!(text.contains("[Unit]\nAfter=local-fs.target\n"), "{text}");
            assert_eq!(f.mode, 0o644);
        }
    }
}
