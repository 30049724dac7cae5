//! What isolates a run child from the host beyond its own process attributes (those are in
//! `jail`): an unprivileged host identity, namespaces of its own, an empty root that holds only
//! what the task needs, no capabilities, and Landlock. Each forked child applies these itself,
//! in this order. A step the host does not offer (no user namespaces for an unprivileged
//! daemon, an old kernel without Landlock) is recorded as absent, and `[sandbox] require`
//! turns an absence into a refusal; a step that fails once begun fails closed with its code.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::exit;
use super::jail::{StepFailed, fail};

/// Where the child builds its new root (a tmpfs mounted over it in the child's own mount
/// namespace: the host's directory is never touched).
const STAGE: &str = "/tmp";

/// The host identity a child takes when the daemon runs as root.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Identity {
    /// Host user id (never 0; default 65534, `nobody`).
    pub uid: u32,
    /// Host group id (default 65534, `nogroup`).
    pub gid: u32,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            uid: 65534,
            gid: 65534,
        }
    }
}

/// The state of one confinement in this child.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct State {
    /// Its name (one of [`ALL`]).
    pub name: &'static str,
    /// In force.
    pub active: bool,
    /// What it amounts to, or why it is absent.
    pub detail: String,
}

/// Every confinement a run child can have, in the order applied.
pub(crate) const ALL: &[&str] = &[
    "stdio_only",
    "empty_environment",
    "unprivileged_identity",
    "user_namespace",
    "ipc_namespace",
    "uts_namespace",
    "mount_namespace",
    "empty_root",
    "capabilities_cleared",
    "rlimits",
    "no_new_privs",
    "non_dumpable",
    "parent_death_signal",
    "landlock_filesystem",
    "landlock_network",
    "landlock_scopes",
    "seccomp",
];

/// Takes the unprivileged host identity if the process is root: no supplementary groups,
/// then `gid`, then `uid` (real, effective and saved), which also empties the capability
/// sets. An unprivileged process keeps its own identity. Returns the detail for `Status`.
pub(crate) fn unprivileged(identity: Identity) -> Result<String, StepFailed> {
    use nix::unistd::{Gid, Uid, getresgid, getresuid, setgroups, setresgid, setresuid};
    let step = |e: nix::Error| fail(exit::IDENTITY, "unprivileged_identity", e);
    if !nix::unistd::geteuid().is_root() {
        let me = nix::unistd::getuid().as_raw();
        return Ok(format!("uid {me} (the daemon's own, not root)"));
    }
    if identity.uid == 0 {
        return Err(fail(
            exit::IDENTITY,
            "unprivileged_identity",
            "the sandbox uid must not be 0",
        ));
    }
    let (uid, gid) = (Uid::from_raw(identity.uid), Gid::from_raw(identity.gid));
    setgroups(&[]).map_err(step)?;
    setresgid(gid, gid, gid).map_err(step)?;
    setresuid(uid, uid, uid).map_err(step)?;
    let u = getresuid().map_err(step)?;
    let g = getresgid().map_err(step)?;
    if [u.real, u.effective, u.saved] != [uid; 3] || [g.real, g.effective, g.saved] != [gid; 3] {
        return Err(fail(
            exit::IDENTITY,
            "unprivileged_identity",
            "the identity did not change",
        ));
    }
    Ok(format!("uid {}, gid {}", identity.uid, identity.gid))
}

/// Which namespaces a child entered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Namespaces {
    /// User and mount: both or neither.
    pub isolated: bool,
    /// IPC (SysV and POSIX message queues of its own; the seccomp filters allow none of their
    /// calls anyway) and UTS (a host name of its own): a service manager may forbid them
    /// alone, and the unit does (they add nothing once the rest holds).
    pub ipc: bool,
    /// See `ipc`.
    pub uts: bool,
}

/// Enters new user, mount, IPC and (where allowed) UTS namespaces, mapping the child's own
/// host uid and gid to 0 inside (so it may build its root), `setgroups` denied. Nothing
/// changes when the host allows no unprivileged user namespace.
pub(crate) fn namespaces() -> Result<Namespaces, StepFailed> {
    use nix::sched::{CloneFlags, unshare};
    let uid = nix::unistd::getuid().as_raw();
    let gid = nix::unistd::getgid().as_raw();
    let base = CloneFlags::CLONE_NEWUSER | CloneFlags::CLONE_NEWNS;
    let refused = |e: &nix::Error| {
        matches!(
            e,
            nix::Error::EPERM | nix::Error::EINVAL | nix::Error::ENOSPC | nix::Error::EUSERS
        )
    };
    let mut entered = None;
    for (ipc, uts) in [(true, true), (true, false), (false, false)] {
        let mut flags = base;
        flags.set(CloneFlags::CLONE_NEWIPC, ipc);
        flags.set(CloneFlags::CLONE_NEWUTS, uts);
        match unshare(flags) {
            Ok(()) => {
                entered = Some(Namespaces {
                    isolated: true,
                    ipc,
                    uts,
                });
                break;
            }
            Err(e) if refused(&e) => {}
            Err(e) => return Err(fail(exit::NAMESPACES, "user_namespace", e)),
        }
    }
    let Some(entered) = entered else {
        return Ok(Namespaces::default());
    };
    // A change of identity left the process non-dumpable, which makes its /proc files root's:
    // the maps could not be written. It is made non-dumpable again later (`jail`).
    nix::sys::prctl::set_dumpable(true).map_err(|e| fail(exit::NAMESPACES, "user_namespace", e))?;
    let write = |file: &str, text: String| {
        std::fs::write(format!("/proc/self/{file}"), text)
            .map_err(|e| fail(exit::NAMESPACES, "user_namespace", format!("{file}: {e}")))
    };
    write("setgroups", "deny".to_owned())?;
    write("uid_map", format!("0 {uid} 1\n"))?;
    write("gid_map", format!("0 {gid} 1\n"))?;
    if entered.uts {
        let _ = nix::unistd::sethostname("hubworker-run");
    }
    Ok(entered)
}

/// What the task's root must hold: host paths bound read-only at paths inside.
#[derive(Debug, Default, Clone)]
pub(crate) struct Binds {
    /// (host path, path inside the new root), files.
    pub files: Vec<(PathBuf, PathBuf)>,
    /// (host path, path inside the new root), directories (Unix sockets of a database).
    pub dirs: Vec<(PathBuf, PathBuf)>,
}

/// Why a bind could not be made: the task cannot run, but the sandbox is sound.
#[derive(Debug)]
pub(crate) struct Unreachable {
    /// The path inside the new root that stays empty.
    pub inside: PathBuf,
    /// Why.
    pub why: nix::Error,
}

/// Builds the child's root on a fresh tmpfs (in its own mount namespace): the host's mounts
/// made private to it, each bind mounted read-only (nosuid, nodev, noexec), the tmpfs itself
/// read-only, then `pivot_root` into it and the host's tree detached. Afterwards the child
/// sees only what `binds` lists. Binds the child's identity cannot read are left out and
/// returned (the task then fails with a clear message). `None` when the host forbids mounting
/// at all (a seccomp filter of the service manager: EPERM on the first mount); anything else
/// failing is fatal.
pub(crate) fn enter_empty_root(binds: &Binds) -> Result<Option<Vec<Unreachable>>, StepFailed> {
    let step = |what: &str, e: nix::Error| fail(exit::ROOT, "empty_root", format!("{what}: {e}"));
    match mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    ) {
        Ok(()) => {}
        Err(nix::Error::EPERM) => return Ok(None),
        Err(e) => return Err(step("making mounts private", e)),
    }
    // Every source is opened (O_PATH) before the tmpfs goes over the stage, which may hide it
    // (a database under /tmp); the binds then go through the descriptors.
    let mut unreachable = Vec::new();
    let mut sources = Vec::new();
    let targets = binds
        .files
        .iter()
        .map(|b| (b, false))
        .chain(binds.dirs.iter().map(|b| (b, true)));
    for ((host, inside), dir) in targets {
        use nix::fcntl::{OFlag, open};
        match open(
            host.as_path(),
            OFlag::O_PATH | OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        ) {
            Ok(fd) => sources.push((fd, inside, dir)),
            Err(e @ (nix::Error::EACCES | nix::Error::ENOENT | nix::Error::ENOTDIR)) => {
                unreachable.push(Unreachable {
                    inside: inside.clone(),
                    why: e,
                });
            }
            Err(e) => return Err(step("opening a path the task needs", e)),
        }
    }
    mount(
        Some("tmpfs"),
        STAGE,
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("size=64k,nr_inodes=64,mode=0755"),
    )
    .map_err(|e| step("mounting the new root", e))?;
    let stage = Path::new(STAGE);
    for (fd, inside, dir) in sources {
        let target = stage.join(inside.strip_prefix("/").unwrap_or(inside));
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| {
                fail(
                    exit::ROOT,
                    "empty_root",
                    format!("creating {parent:?}: {e}"),
                )
            })?;
        }
        let made = if dir {
            std::fs::create_dir_all(&target)
        } else {
            std::fs::File::create(&target).map(drop)
        };
        made.map_err(|e| {
            fail(
                exit::ROOT,
                "empty_root",
                format!("creating {target:?}: {e}"),
            )
        })?;
        let source = PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()));
        bind_read_only(&source, &target).map_err(|e| step("binding a path the task needs", e))?;
    }
    let old = stage.join(".host");
    std::fs::create_dir(&old)
        .map_err(|e| fail(exit::ROOT, "empty_root", format!("creating {old:?}: {e}")))?;
    nix::unistd::pivot_root(stage, &old).map_err(|e| step("pivot_root", e))?;
    nix::unistd::chdir("/").map_err(|e| step("chdir", e))?;
    umount2("/.host", MntFlags::MNT_DETACH).map_err(|e| step("detaching the host's tree", e))?;
    std::fs::remove_dir("/.host")
        .map_err(|e| fail(exit::ROOT, "empty_root", format!("removing /.host: {e}")))?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC,
        None::<&str>,
    )
    .map_err(|e| step("making the new root read-only", e))?;
    Ok(Some(unreachable))
}

/// Binds `host` at `target` read-only. The remount keeps the flags the kernel locks on a
/// mount inherited from a more privileged namespace (its atime mode, nosuid, nodev, noexec),
/// or it would be refused.
fn bind_read_only(host: &Path, target: &Path) -> Result<(), nix::Error> {
    use nix::sys::statvfs::{FsFlags, statvfs};
    mount(
        Some(host),
        target,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    let kept = statvfs(target)?.flags();
    let mut flags = MsFlags::MS_REMOUNT
        | MsFlags::MS_BIND
        | MsFlags::MS_RDONLY
        | MsFlags::MS_NOSUID
        | MsFlags::MS_NODEV
        | MsFlags::MS_NOEXEC;
    for (st, ms) in [
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if kept.contains(st) {
            flags |= ms;
        }
    }
    mount(None::<&str>, target, None::<&str>, flags, None::<&str>)
}

/// Empties the bounding set if this process may (it needs `CAP_SETPCAP`, which a child holds
/// in its own user namespace; without one an unprivileged process keeps a bounding set that
/// no_new_privs makes useless), then checks it. Returns whether it did. A spare does this
/// while it waits: the bounding set limits only what an `execve` could grant, so the mounts
/// that build the task's root still work, and nothing can fill it again.
pub(crate) fn drop_bounding_set() -> Result<bool, StepFailed> {
    use caps::CapSet;
    let step = |e: caps::errors::CapsError| fail(exit::CAPABILITIES, "capabilities_cleared", e);
    let can_drop =
        caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP).unwrap_or(false);
    if !can_drop {
        return Ok(false);
    }
    for cap in caps::all() {
        caps::drop(None, CapSet::Bounding, cap).map_err(step)?;
    }
    if !caps::read(None, CapSet::Bounding).map_err(step)?.is_empty() {
        return Err(fail(
            exit::CAPABILITIES,
            "capabilities_cleared",
            "the bounding set is not empty",
        ));
    }
    Ok(true)
}

/// Clears the ambient, inheritable, effective and permitted sets, then checks them (the
/// bounding set was emptied before, [`drop_bounding_set`], which said whether it could be:
/// `bounding`). Returns the detail for `Status`.
pub(crate) fn clear_capabilities(bounding: bool) -> Result<String, StepFailed> {
    use caps::CapSet;
    let step = |e: caps::errors::CapsError| fail(exit::CAPABILITIES, "capabilities_cleared", e);
    caps::clear(None, CapSet::Ambient).map_err(step)?;
    caps::clear(None, CapSet::Inheritable).map_err(step)?;
    caps::clear(None, CapSet::Effective).map_err(step)?;
    caps::clear(None, CapSet::Permitted).map_err(step)?;
    // Ambient is not read back: the kernel keeps it a subset of permitted and inheritable
    // (capabilities(7)), so both empty means it is empty too; reading it would cost two
    // `prctl`s per capability the kernel knows (82 here) on the task's time.
    for set in [CapSet::Effective, CapSet::Permitted, CapSet::Inheritable] {
        if !caps::read(None, set).map_err(step)?.is_empty() {
            return Err(fail(
                exit::CAPABILITIES,
                "capabilities_cleared",
                format!("{set:?} is not empty"),
            ));
        }
    }
    Ok(if bounding {
        "all sets empty".to_owned()
    } else {
        "effective, permitted, inheritable and ambient empty; bounding kept (no CAP_SETPCAP, no_new_privs)".to_owned()
    })
}

/// What a Landlock ruleset amounted to on this kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Landlocked {
    /// The ABI the kernel offers (0: none).
    pub abi: u32,
    /// Filesystem access is restricted.
    pub filesystem: bool,
    /// TCP bind and connect are restricted.
    pub network: bool,
    /// Signals and abstract Unix sockets are scoped to the domain.
    pub scopes: bool,
}

/// The Landlock ABI of the running kernel (0: none).
/// (`landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION)`; an error, when the
/// kernel has no Landlock or it is disabled, means 0.)
pub(crate) fn landlock_abi() -> u32 {
    // SAFETY: the version query takes no pointer the kernel writes to (attr NULL, size 0) and
    // returns an integer; it changes nothing.
    #[allow(unsafe_code)]
    let v = unsafe {
        nix::libc::syscall(
            nix::libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    u32::try_from(v).unwrap_or(0)
}

/// The database phase's Landlock domain: the filesystem read-only for `read_files` (the task's
/// SQLite files, the resolver's files) and nothing else, TCP connect only to `ports` and no
/// bind, and (ABI 6) no signals or abstract Unix sockets outside the domain: not to the
/// daemon, not to the fork server, not to another run child. Only the calling thread and
/// the threads it starts later are covered: the child is still single-threaded.
pub(crate) fn landlock_database(
    read_files: &[PathBuf],
    ports: &[u16],
) -> Result<Landlocked, StepFailed> {
    use landlock::{ABI, AccessFs, NetPort, PathBeneath, PathFd, RulesetCreatedAttr};
    let step = |e: landlock::RulesetError| fail(exit::LANDLOCK, "landlock", e);
    let abi = ABI::V6;
    let mut created = base_ruleset(abi).map_err(step)?;
    for file in read_files {
        let Ok(fd) = PathFd::new(file) else { continue };
        created = created
            .add_rule(PathBeneath::new(
                fd,
                AccessFs::from_read(abi) & AccessFs::from_file(abi),
            ))
            .map_err(step)?;
    }
    for port in ports {
        created = created
            .add_rule(NetPort::new(*port, landlock::AccessNet::ConnectTcp))
            .map_err(step)?;
    }
    enforce(created)
}

/// The compute phase's domain, stacked on the first: no filesystem access and no TCP at all.
pub(crate) fn landlock_compute() -> Result<Landlocked, StepFailed> {
    let created =
        base_ruleset(landlock::ABI::V6).map_err(|e| fail(exit::LANDLOCK, "landlock_compute", e))?;
    enforce(created)
}

fn base_ruleset(abi: landlock::ABI) -> Result<landlock::RulesetCreated, landlock::RulesetError> {
    use landlock::{Access, AccessFs, AccessNet, Ruleset, RulesetAttr, Scope};
    Ruleset::default()
        .handle_access(AccessFs::from_all(abi))?
        .handle_access(AccessNet::from_all(abi))?
        .scope(Scope::from_all(abi))?
        .create()
}

fn enforce(created: landlock::RulesetCreated) -> Result<Landlocked, StepFailed> {
    use landlock::RulesetStatus;
    let status = created
        .restrict_self()
        .map_err(|e| fail(exit::LANDLOCK, "landlock", e))?;
    let abi = landlock_abi();
    let on = status.ruleset != RulesetStatus::NotEnforced;
    Ok(Landlocked {
        abi,
        filesystem: on && abi >= 1,
        network: on && abi >= 4,
        scopes: on && abi >= 6,
    })
}
