//! The fork server's template: `hubworker __sandbox-template`, started once by the daemon (and
//! again if it ever dies). It confines itself (`jail::enter_template`), builds the seccomp
//! filters once, pays the process's first-use costs once (a workflow validated, the parser and
//! allocator warmed), checks that it is single-threaded, and then only forks: one child per
//! task, copy-on-write, no exec, no re-initialisation. It never sees a task or a credential:
//! the daemon talks to each child over the child's own pipes.
//!
//! Its stdin is the control socket (see `TemplateRequest`/`TemplateEvent` in the protocol
//! file): a `Fork` arrives with the child's three pipe ends; the template forks, the child
//! takes them as its stdio and goes on in `child::forked`; the template answers with
//! the pid and, since it is the parent, reaps every child and reports its wait status. A
//! `Kill` is only ever sent to a child the template has not reaped, so a pid is never reused
//! under the daemon's signal.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io::IoSliceMut;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use prost::Message;

use super::child::{self, ChildArgs, Compiled};
use super::{Fault, exit, jail, policy};
use crate::proto::sandbox::{
    Exited, Forked, TemplateEvent, TemplateReady, TemplateRequest, template_event, template_request,
};

/// The hidden subcommand that turns the binary into the fork server's template.
pub const TEMPLATE_COMMAND: &str = "__sandbox-template";

/// The largest control message (a `Fork` or a `Kill` is a few bytes).
const MAX_REQUEST: usize = 4096;

/// Runs the template and returns its exit code. `args` are the arguments after the hidden
/// subcommand's name.
pub fn main(args: &[OsString]) -> i32 {
    let args = match ChildArgs::parse(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hubworker sandbox template: {e}");
            return exit::USAGE;
        }
    };
    child::name(c"hubworker-forks");
    let own = match jail::enter_template(args.parent) {
        Ok(c) => c,
        Err(f) => {
            eprintln!("hubworker sandbox template: {} failed: {}", f.step, f.why);
            return f.code;
        }
    };
    let compiled = match (policy::database_phase(), policy::compute_phase()) {
        (Ok(database), Ok(compute)) => Compiled { database, compute },
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("hubworker sandbox template: building the seccomp filters failed: {e}");
            return exit::SECCOMP;
        }
    };
    // No transparent huge pages for the template and its children (the flag is inherited):
    // a child's first touch of each 2 MiB of fresh heap would make the kernel zero a whole
    // huge page, the largest single cost of a short task (measured: a fifth of a child's CPU).
    if let Err(e) = nix::sys::prctl::set_thp_disable(true) {
        eprintln!("hubworker sandbox template: disabling transparent huge pages failed: {e}");
        return exit::TEMPLATE;
    }
    if let Err(e) = super::pagecache::read_in_large_folios() {
        eprintln!("hubworker sandbox template: {e} (children will fault in 4 KiB pages)");
    }
    super::warm::template();
    // fork() copies only the calling thread: a template with a second thread would hand its
    // children locks held by a thread that does not exist in them.
    match threads() {
        Some(1) => {}
        n => {
            eprintln!("hubworker sandbox template: not single-threaded ({n:?} threads)");
            return exit::TEMPLATE;
        }
    }
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    if mask.thread_block().is_err() {
        return exit::TEMPLATE;
    }
    let Ok(reaper) = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
    else {
        return exit::TEMPLATE;
    };
    let control = std::io::stdin();
    let control = control.as_fd();
    let ready = template_event::Msg::Ready(TemplateReady {
        confinements: own.iter().map(|c| (*c).to_owned()).collect(),
    });
    if send(control, ready).is_err() {
        return exit::PROTOCOL;
    }
    serve(control, &reaper, &args, &compiled)
}

/// The loop: requests from the daemon, children's ends from the signalfd. Ends when the daemon
/// closes the socket (the children then die with the template: their parent-death signal).
fn serve(control: BorrowedFd<'_>, reaper: &SignalFd, args: &ChildArgs, compiled: &Compiled) -> i32 {
    let mut live: HashSet<i32> = HashSet::new();
    let mut spare = fork_spare(args, compiled, &mut live);
    loop {
        let mut fds = [
            PollFd::new(control, PollFlags::POLLIN),
            PollFd::new(reaper.as_fd(), PollFlags::POLLIN),
        ];
        match poll(&mut fds, PollTimeout::NONE) {
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(_) => return exit::PROTOCOL,
        }
        let control_ready = fds[0].any().unwrap_or(false);
        let reaper_ready = fds[1].any().unwrap_or(false);
        if reaper_ready {
            while let Ok(Some(_)) = reaper.read_signal() {}
            if reap(control, &mut live, &mut spare).is_err() {
                return exit::PROTOCOL;
            }
        }
        if control_ready {
            match receive(control) {
                Ok(None) => return exit::OK,
                Ok(Some((request, passed))) => {
                    let mut children = Children {
                        live: &mut live,
                        spare: &mut spare,
                    };
                    if handle(control, request, passed, &mut children, args, compiled).is_err() {
                        return exit::PROTOCOL;
                    }
                }
                Err(()) => return exit::PROTOCOL,
            }
        }
    }
}

/// A child forked ahead of need, in its namespaces, waiting on `channel` for a task's pipes.
struct Spare {
    pid: i32,
    channel: OwnedFd,
}

/// The template's children: those it has not reaped, and the spare among them.
struct Children<'a> {
    live: &'a mut HashSet<i32>,
    spare: &'a mut Option<Spare>,
}

/// Forks the next spare child (see [`child::spare`]); `None` if the host would not.
fn fork_spare(args: &ChildArgs, compiled: &Compiled, live: &mut HashSet<i32>) -> Option<Spare> {
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .ok()?;
    // SAFETY: as for every fork here: the template is single-threaded.
    #[allow(unsafe_code)]
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            drop(ours);
            child::leave(child::spare(theirs, args, compiled));
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            drop(theirs);
            live.insert(child.as_raw());
            Some(Spare {
                pid: child.as_raw(),
                channel: ours,
            })
        }
        Err(_) => None,
    }
}

/// Hands a task's pipes (and a planted fault's name, `-` for none) to the spare.
fn hand_over(spare: &Spare, fault: Option<Fault>, stdio: &[OwnedFd; 3]) -> Result<(), ()> {
    use nix::sys::socket::{ControlMessage, sendmsg};
    let name = fault.map(Fault::as_str).unwrap_or("-");
    let fds = [
        stdio[0].as_raw_fd(),
        stdio[1].as_raw_fd(),
        stdio[2].as_raw_fd(),
    ];
    let iov = [std::io::IoSlice::new(name.as_bytes())];
    sendmsg::<()>(
        spare.channel.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
        None,
    )
    .map(drop)
    .map_err(drop)
}

/// Reaps every child that ended and reports each (a spare that ended unused is not news to
/// the daemon, which never heard of it).
fn reap(
    control: BorrowedFd<'_>,
    live: &mut HashSet<i32>,
    spare: &mut Option<Spare>,
) -> Result<(), ()> {
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return Ok(()),
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                live.remove(&pid.as_raw());
                if spare.as_ref().is_some_and(|s| s.pid == pid.as_raw()) {
                    *spare = None;
                    continue;
                }
                let wait_status = raw_status(status);
                send(
                    control,
                    template_event::Msg::Exited(Exited {
                        pid: u32::try_from(pid.as_raw()).unwrap_or(0),
                        wait_status,
                    }),
                )?;
            }
            Err(nix::Error::EINTR) => {}
            Err(_) => return Ok(()),
        }
    }
}

/// The wait status as `waitpid(2)` encodes it (what `ExitStatus::from_raw` takes).
fn raw_status(status: WaitStatus) -> i32 {
    match status {
        WaitStatus::Exited(_, code) => (code & 0xff) << 8,
        WaitStatus::Signaled(_, signal, core) => signal as i32 | if core { 0x80 } else { 0 },
        _ => 0x7f,
    }
}

/// One request and the descriptors that came with it (`None`: the daemon closed the socket).
fn receive(control: BorrowedFd<'_>) -> Result<Option<(TemplateRequest, Vec<OwnedFd>)>, ()> {
    let mut buf = vec![0u8; MAX_REQUEST];
    let Some((len, passed)) = receive_packet(control, &mut buf)? else {
        return Ok(None);
    };
    if len == 0 && passed.is_empty() {
        return Ok(Some(empty()));
    }
    let request = TemplateRequest::decode(&buf[..len]).map_err(|_| ())?;
    Ok(Some((request, passed)))
}

/// What a spare child is handed: a planted fault (tests) and its task's stdin, stdout, stderr.
pub(super) type Handed = (Option<Fault>, [OwnedFd; 3]);

/// A spare child's wait for its task: the pipes the template hands over (and a planted test
/// fault's name, `-` for none). `None`: the template closed the channel.
pub(super) fn receive_stdio(channel: &OwnedFd) -> Result<Option<Handed>, ()> {
    let mut buf = vec![0u8; 64];
    loop {
        let Some((len, passed)) = receive_packet(channel.as_fd(), &mut buf)? else {
            return Ok(None);
        };
        if len == 0 && passed.is_empty() {
            continue;
        }
        let name = std::str::from_utf8(&buf[..len]).map_err(|_| ())?;
        let fault = match name {
            "-" => None,
            other => Some(other.parse::<Fault>().map_err(|_| ())?),
        };
        let stdio = <[OwnedFd; 3]>::try_from(passed).map_err(|_| ())?;
        return Ok(Some((fault, stdio)));
    }
}

/// One packet and its descriptors; `None` at the end of the stream; an interrupted call is an
/// empty packet.
fn receive_packet(fd: BorrowedFd<'_>, buf: &mut [u8]) -> Result<Option<(usize, Vec<OwnedFd>)>, ()> {
    let mut space = nix::cmsg_space!([RawFd; 3]);
    let (len, passed) = {
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<()>(
            fd.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(m) => m,
            Err(nix::Error::EINTR | nix::Error::EAGAIN) => return Ok(Some((0, Vec::new()))),
            Err(_) => return Err(()),
        };
        let mut passed = Vec::new();
        for cmsg in msg.cmsgs().map_err(|_| ())? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for fd in fds {
                    // SAFETY: the kernel just installed this descriptor in our table for us
                    // (SCM_RIGHTS); nothing else refers to it, so this is its one owner.
                    #[allow(unsafe_code)]
                    passed.push(unsafe { OwnedFd::from_raw_fd(fd) });
                }
            }
        }
        (msg.bytes, passed)
    };
    if len == 0 && passed.is_empty() {
        return Ok(None);
    }
    Ok(Some((len, passed)))
}

fn empty() -> (TemplateRequest, Vec<OwnedFd>) {
    (TemplateRequest { msg: None }, Vec::new())
}

fn handle(
    control: BorrowedFd<'_>,
    request: TemplateRequest,
    passed: Vec<OwnedFd>,
    children: &mut Children<'_>,
    args: &ChildArgs,
    compiled: &Compiled,
) -> Result<(), ()> {
    match request.msg {
        Some(template_request::Msg::Fork(f)) => {
            let answer = |pid: u32, error: &str| {
                template_event::Msg::Forked(Forked {
                    id: f.id,
                    pid,
                    error: error.to_owned(),
                })
            };
            let Ok(stdio) = <[OwnedFd; 3]>::try_from(passed) else {
                return send(control, answer(0, "a fork needs exactly three descriptors"));
            };
            let fault = if f.fault.is_empty() {
                args.fault
            } else {
                match f.fault.parse::<Fault>() {
                    Ok(fault) => Some(fault),
                    Err(e) => return send(control, answer(0, &e)),
                }
            };
            // The spare, if there is one, takes the task; a new spare is forked once the
            // daemon has its answer.
            if let Some(spare) = children.spare.take()
                && hand_over(&spare, fault, &stdio).is_ok()
            {
                drop(stdio);
                let sent = send(control, answer(u32::try_from(spare.pid).unwrap_or(0), ""));
                *children.spare = fork_spare(args, compiled, children.live);
                return sent;
            }
            // No spare, or it is gone or going (reaped at the next SIGCHLD): a child of its own.
            // SAFETY: the template is single-threaded (checked before it serves; it starts no
            // thread), so the child is a complete copy of the only thread and may run any
            // code, allocator included.
            #[allow(unsafe_code)]
            match unsafe { nix::unistd::fork() } {
                Ok(nix::unistd::ForkResult::Child) => {
                    child::leave(child::forked(stdio, args, fault, compiled));
                }
                Ok(nix::unistd::ForkResult::Parent { child }) => {
                    drop(stdio);
                    children.live.insert(child.as_raw());
                    send(
                        control,
                        answer(u32::try_from(child.as_raw()).unwrap_or(0), ""),
                    )
                }
                Err(e) => send(control, answer(0, &format!("fork: {e}"))),
            }
        }
        Some(template_request::Msg::Kill(k)) => {
            let pid = i32::try_from(k.pid).unwrap_or(0);
            if pid > 0
                && children.live.contains(&pid)
                && let Ok(signal) = Signal::try_from(k.signal)
                && let Err(e) = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), signal)
            {
                eprintln!("hubworker sandbox template: {signal} to child {pid}: {e}");
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// Sends one event to the daemon (one packet).
fn send(control: BorrowedFd<'_>, msg: template_event::Msg) -> Result<(), ()> {
    let bytes = TemplateEvent { msg: Some(msg) }.encode_to_vec();
    loop {
        match nix::sys::socket::send(control.as_raw_fd(), &bytes, MsgFlags::empty()) {
            Ok(_) => return Ok(()),
            Err(nix::Error::EINTR) => {}
            Err(_) => return Err(()),
        }
    }
}

/// The number of threads of this process (`/proc/self/status`).
pub(super) fn threads() -> Option<u32> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}
