//! The filters, checked in a classic-BPF interpreter: every call number, both architectures
//! and the arguments the rules read.

use super::*;

/// The stricter of two answers, as the kernel takes it from stacked filters.
fn stricter(a: u32, b: u32) -> u32 {
    if (a as i32) < (b as i32) { a } else { b }
}

/// The database phase as a child has it: the set-up filter with the database phase's on top.
fn stacked(nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let setup = setup_phase().expect("set-up phase");
    let database = database_phase().expect("database phase");
    stricter(
        bpf::tests::run(&setup[0], nr, arch, args),
        bpf::tests::run(&database, nr, arch, args),
    )
}

#[test]
fn the_filters_compile_for_this_machine() {
    let setup = setup_phase().expect("set-up phase");
    assert_eq!(setup.len(), 1);
    assert!(!setup[0].is_empty());
    let database = database_phase().expect("database phase");
    assert!(!database.is_empty());
    // The point of the split: what a task waits for the kernel to install is short.
    assert!(
        database.len() * 4 < setup[0].len(),
        "{} against {}",
        database.len(),
        setup[0].len()
    );
    assert!(!compute_phase().expect("compute phase").is_empty());
}

/// The set-up calls are the set-up's alone: none is also on the database phase's lists, so
/// taking them away takes nothing else.
#[test]
fn the_set_up_calls_are_not_the_database_phases() {
    let mut database: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    argument_rules(&mut database, &[]).expect("rules");
    let listed: Vec<i64> = ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .chain(DATABASE)
        .chain(DATABASE_X86_64)
        .map(|(nr, _)| *nr)
        .chain(database.keys().copied())
        .collect();
    for (nr, why) in SETUP.iter().chain(SETUP_X86_64) {
        assert!(
            !listed.contains(nr),
            "{nr} ({why}) is the database phase's too"
        );
    }
    let nr = libc::SYS_prctl as u32;
    for option in SETUP_PRCTL {
        let args = [*option, 0, 0, 0, 0, 0];
        assert_eq!(
            linear(nr, AUDIT_ARCH, args),
            bpf::RET_KILL_PROCESS,
            "{option}"
        );
        let setup = setup_phase().expect("set-up phase");
        assert_eq!(
            bpf::tests::run(&setup[0], nr, AUDIT_ARCH, args),
            bpf::RET_ALLOW
        );
    }
}

/// The set-up filter alone lets the last steps run; stacked, they are gone.
#[test]
fn the_set_up_calls_end_with_the_set_up() {
    let setup = setup_phase().expect("set-up phase");
    for nr in [
        libc::SYS_mount,
        libc::SYS_pivot_root,
        libc::SYS_umount2,
        libc::SYS_capset,
        libc::SYS_close_range,
    ] {
        let nr = nr as u32;
        assert_eq!(
            bpf::tests::run(&setup[0], nr, AUDIT_ARCH, [0; 6]),
            bpf::RET_ALLOW
        );
        assert_eq!(
            stacked(nr, AUDIT_ARCH, [0; 6]),
            bpf::RET_KILL_PROCESS,
            "{nr}"
        );
    }
}

#[test]
fn the_allowlist_never_names_a_dangerous_call() {
    let dangerous = [
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_bpf,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_io_uring_setup,
        libc::SYS_chroot,
        libc::SYS_setrlimit,
        libc::SYS_kill,
        libc::SYS_memfd_create,
    ];
    for (nr, why) in ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .chain(DATABASE)
        .chain(DATABASE_X86_64)
    {
        assert!(!dangerous.contains(nr), "{nr} is allowed: {why}");
        assert!(!why.is_empty());
    }
}

/// The filter as `seccompiler` alone wrote it (one linear chain, and `clone3` in a second
/// filter), the kernel taking the stricter answer of the two.
fn linear(nr: u32, arch: u32, args: [u64; 6]) -> u32 {
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for (nr, _) in ALWAYS
        .iter()
        .chain(ALWAYS_X86_64)
        .chain(DATABASE)
        .chain(DATABASE_X86_64)
    {
        rules.insert(*nr, Vec::new());
    }
    argument_rules(&mut rules, &[]).expect("rules");
    rules.insert(libc::SYS_clone3, Vec::new());
    let allow = compile(rules, SeccompAction::KillProcess, SeccompAction::Allow).expect("a");
    let clone3 = [(libc::SYS_clone3, Vec::new())].into_iter().collect();
    let enosys = SeccompAction::Errno(libc::ENOSYS as u32);
    let clone3 = compile(clone3, SeccompAction::Allow, enosys).expect("clone3");
    stricter(
        bpf::tests::run(&allow, nr, arch, args),
        bpf::tests::run(&clone3, nr, arch, args),
    )
}

/// The set-up filter with the database phase's on top answers every call, every architecture
/// and the arguments the rules look at exactly as the one linear filter of the database phase
/// did (`seccompiler`'s chain, before the binary search and the split).
#[test]
fn the_stacked_filters_answer_as_the_linear_one() {
    let setup = setup_phase().expect("set-up phase");
    let database = database_phase().expect("database phase");
    let child = |nr, arch, args| {
        stricter(
            bpf::tests::run(&setup[0], nr, arch, args),
            bpf::tests::run(&database, nr, arch, args),
        )
    };
    let pid = u64::from(std::process::id());
    let values = [
        0,
        1,
        libc::CLONE_THREAD as u64,
        libc::CLONE_THREAD as u64 | libc::CLONE_NEWUSER as u64,
        libc::AF_INET as u64,
        libc::AF_NETLINK as u64,
        libc::AF_UNIX as u64,
        libc::FIONBIO,
        libc::PR_SET_NAME as u64,
        libc::PR_SET_SECCOMP as u64,
        libc::PR_SET_DUMPABLE as u64,
        libc::PR_CAPBSET_READ as u64,
        libc::PR_CAP_AMBIENT as u64,
        u64::from(libc::SECCOMP_SET_MODE_FILTER),
        pid,
        pid + 1,
        u64::MAX,
    ];
    let mut checked = 0;
    for nr in (0..470).chain((0..470).map(|n| n | 0x4000_0000)) {
        for arch in [AUDIT_ARCH, 0x4000_0003] {
            for &x in &values {
                for args in [[x, 0, 0, 0, 0, 0], [0, x, 0, 0, 0, 0], [0, 0, x, 0, 0, 0]] {
                    let want = linear(nr, arch, args);
                    assert_eq!(child(nr, arch, args), want, "{nr} {args:?}");
                    checked += usize::from(want == bpf::RET_ALLOW);
                }
            }
        }
    }
    assert!(checked > 1000, "the allowlist allows something: {checked}");
    assert_eq!(
        child(libc::SYS_clone3 as u32, AUDIT_ARCH, [0; 6]),
        bpf::RET_ERRNO | libc::ENOSYS as u32
    );
    assert_eq!(
        child(libc::SYS_execve as u32, AUDIT_ARCH, [0; 6]),
        bpf::RET_KILL_PROCESS
    );
}

/// A child may lower only its own process group, only to the lowest priority.
#[test]
fn setpriority_only_lowers_its_own_group() {
    let (group, nice) = (u64::from(std::process::id()), TEARDOWN_NICE as u64);
    let (pgrp, process, user) = (libc::PRIO_PGRP as u64, libc::PRIO_PROCESS as u64, 2);
    let nr = libc::SYS_setpriority as u32;
    let call = |[a, b, c]: [u64; 3]| stacked(nr, AUDIT_ARCH, [a, b, c, 0, 0, 0]);
    assert_eq!(call([pgrp, group, nice]), bpf::RET_ALLOW);
    let higher = [[pgrp, group, 0], [pgrp, group, (-20i64) as u64]];
    let others = [[pgrp, 0, nice], [pgrp, group + 1, nice], [process, 0, nice]];
    for refused in higher.into_iter().chain(others).chain([[user, 0, nice]]) {
        assert_eq!(call(refused), bpf::RET_KILL_PROCESS, "{refused:?}");
    }
}

#[test]
fn the_compute_phase_takes_away_sockets_and_files() {
    let forbidden: Vec<i64> = COMPUTE_FORBIDS.iter().map(|(nr, _)| *nr).collect();
    for nr in [libc::SYS_socket, libc::SYS_openat, libc::SYS_connect] {
        assert!(forbidden.contains(&nr));
    }
}
