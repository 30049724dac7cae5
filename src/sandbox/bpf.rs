//! A seccomp filter that finds a system call by binary search.
//!
//! `seccompiler` compiles a filter as one linear chain of comparisons, one per system call.
//! The kernel pays for that chain at every `seccomp()`: when a filter is attached it runs the
//! filter once for every system call number (its cache of calls that are always allowed),
//! with interrupts off. For the database phase's ~110 allowed calls that emulation, over
//! ~450 numbers, was half of the whole attach, and attaching the filters took a tenth of a
//! run child's CPU (perf, `bench dispatch`). Here the calls allowed whatever their arguments
//! are found by binary search (a handful of comparisons per number), and only the calls
//! allowed for certain arguments go on to `seccompiler`'s chain, appended unchanged.
//!
//! Classic BPF jumps only forward, by a relative offset: prepending instructions changes no
//! offset inside the appended program, and every miss of the search jumps to its start.

use seccompiler::{BpfProgram, sock_filter};

use super::policy::FilterError;

/// Instruction codes (`linux/bpf_common.h`): class | size | mode, class | operation | source.
const BPF_LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_JMP_JA: u16 = 0x05; // BPF_JMP | BPF_JA
const BPF_JMP_JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JMP_JGE_K: u16 = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_RET_K: u16 = 0x06; // BPF_RET | BPF_K

/// `seccomp_data`: the system call number, then the architecture.
const OFFSET_NR: u32 = 0;
const OFFSET_ARCH: u32 = 4;

/// The kernel's limit on a classic BPF program's length.
const BPF_MAXINSNS: usize = 4096;

/// At most this many numbers are compared one by one at a leaf of the search.
const LEAF: usize = 4;

/// What a filter returns.
pub(crate) const RET_KILL_PROCESS: u32 = 0x8000_0000;
pub(crate) const RET_ALLOW: u32 = 0x7fff_0000;
pub(crate) const RET_ERRNO: u32 = 0x0005_0000;

fn stmt(code: u16, k: u32) -> sock_filter {
    sock_filter {
        code,
        jt: 0,
        jf: 0,
        k,
    }
}

fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
    sock_filter { code, jt, jf, k }
}

/// The filter: the architecture checked (anything else: killed), then each number of `plain`
/// answered with its action, found by binary search; every other number goes on to `rest`
/// (a complete filter of its own, which checks the architecture again).
pub(crate) fn searched(
    arch: u32,
    plain: &[(u32, u32)],
    rest: BpfProgram,
) -> Result<BpfProgram, FilterError> {
    let mut entries = plain.to_vec();
    entries.sort_unstable();
    entries.dedup();
    if entries.windows(2).any(|w| w[0].0 == w[1].0) {
        return Err(FilterError::new("a system call with two actions"));
    }
    let mut out = vec![
        stmt(BPF_LD_W_ABS, OFFSET_ARCH),
        jump(BPF_JMP_JEQ_K, arch, 1, 0),
        stmt(BPF_RET_K, RET_KILL_PROCESS),
        stmt(BPF_LD_W_ABS, OFFSET_NR),
    ];
    let mut misses = Vec::new();
    tree(&entries, &mut out, &mut misses)?;
    let end = out.len();
    for at in misses {
        out[at].k = u32::try_from(end - at - 1).map_err(|_| FilterError::new("filter too long"))?;
    }
    out.extend(rest);
    if out.len() > BPF_MAXINSNS {
        return Err(FilterError::new("filter too long"));
    }
    Ok(out)
}

/// The search over `entries` (sorted): `jge` on the middle number splits them in two halves;
/// at most [`LEAF`] numbers are compared one by one; a miss jumps past the search (patched by
/// the caller: the indices of those jumps go to `misses`).
fn tree(
    entries: &[(u32, u32)],
    out: &mut BpfProgram,
    misses: &mut Vec<usize>,
) -> Result<(), FilterError> {
    if entries.len() <= LEAF {
        for &(nr, action) in entries {
            out.push(jump(BPF_JMP_JEQ_K, nr, 0, 1));
            out.push(stmt(BPF_RET_K, action));
        }
        misses.push(out.len());
        out.push(stmt(BPF_JMP_JA, 0));
        return Ok(());
    }
    let (left, right) = entries.split_at(entries.len() / 2);
    let split = out.len();
    out.push(jump(BPF_JMP_JGE_K, right[0].0, 0, 0));
    tree(left, out, misses)?;
    out[split].jt = u8::try_from(out.len() - split - 1)
        .map_err(|_| FilterError::new("a search branch longer than a jump reaches"))?;
    tree(right, out, misses)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A classic BPF interpreter for the instructions `seccompiler` and [`searched`] emit,
    /// over a `seccomp_data` of (number, architecture, arguments).
    pub(crate) fn run(program: &[sock_filter], nr: u32, arch: u32, args: [u64; 6]) -> u32 {
        let word = |offset: u32| -> u32 {
            match offset {
                0 => nr,
                4 => arch,
                o if (16..64).contains(&o) => {
                    let arg = args[((o - 16) / 8) as usize];
                    if (o - 16) % 8 == 0 {
                        arg as u32
                    } else {
                        (arg >> 32) as u32
                    }
                }
                o => panic!("load at {o}"),
            }
        };
        let (mut a, mut pc) = (0u32, 0usize);
        loop {
            let i = &program[pc];
            pc += 1;
            match i.code {
                0x20 => a = word(i.k),
                0x54 => a &= i.k,
                0x05 => pc += i.k as usize,
                0x15 => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                0x25 => pc += usize::from(if a > i.k { i.jt } else { i.jf }),
                0x35 => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                0x06 => return i.k,
                code => panic!("instruction {code:#x}"),
            }
        }
    }

    #[test]
    fn every_number_finds_its_action_and_the_rest_goes_on() {
        let arch = 0xc000_003e;
        let plain: Vec<(u32, u32)> = (0..200)
            .filter(|n| n % 3 != 0)
            .map(|n| (n, if n == 7 { RET_ERRNO | 38 } else { RET_ALLOW }))
            .collect();
        // The rest: number 3 allowed, anything else killed (as `seccompiler` would write it).
        let rest = vec![
            stmt(BPF_LD_W_ABS, OFFSET_NR),
            jump(BPF_JMP_JEQ_K, 3, 0, 1),
            stmt(BPF_RET_K, RET_ALLOW),
            stmt(BPF_RET_K, RET_KILL_PROCESS),
        ];
        let program = searched(arch, &plain, rest).expect("builds");
        for nr in 0..300 {
            let want = match nr {
                7 => RET_ERRNO | 38,
                3 => RET_ALLOW,
                n if n < 200 && n % 3 != 0 => RET_ALLOW,
                _ => RET_KILL_PROCESS,
            };
            assert_eq!(run(&program, nr, arch, [0; 6]), want, "nr {nr}");
            assert_eq!(
                run(&program, nr | 0x4000_0000, arch, [0; 6]),
                RET_KILL_PROCESS,
                "x32 {nr}"
            );
            assert_eq!(run(&program, nr, 0x4000_0003, [0; 6]), RET_KILL_PROCESS);
        }
    }

    #[test]
    fn a_number_with_two_actions_is_refused() {
        assert!(searched(1, &[(5, RET_ALLOW), (5, RET_KILL_PROCESS)], Vec::new()).is_err());
    }
}
