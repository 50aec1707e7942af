//! Which side of a conflict wins: the version order of DESIGN.md §5 (the third seed's
//! deterministic transpose). The higher `MAJOR.MINOR` wins, never the arrival order, so
//! `merge(base, A, B)` and `merge(base, B, A)` agree byte for byte on every node.

use chorus_chunking::VersionNumber;
use serde::{Deserialize, Serialize};

/// One of the two sides of a three-way merge.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Side {
    Ours,
    Theirs,
}

impl Side {
    pub fn other(self) -> Side {
        match self {
            Side::Ours => Side::Theirs,
            Side::Theirs => Side::Ours,
        }
    }
}

/// The two sides of a merge in version order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Order {
    /// The side whose change wins a conflict.
    pub winner: Side,
    pub ours: VersionNumber,
    pub theirs: VersionNumber,
}

impl Order {
    /// Orders two sides by number. Equal numbers should not happen (a number names one
    /// version); if they do, the side with the greater content wins, which keeps the choice
    /// independent of the argument order.
    pub fn new(
        ours: VersionNumber,
        theirs: VersionNumber,
        ours_content: &[u8],
        theirs_content: &[u8],
    ) -> Order {
        let winner = match ours
            .cmp(&theirs)
            .then_with(|| ours_content.cmp(theirs_content))
        {
            std::cmp::Ordering::Less => Side::Theirs,
            _ => Side::Ours,
        };
        Order {
            winner,
            ours,
            theirs,
        }
    }

    /// Orders two sides by number, equal numbers going to `tie`: for a caller that knows which
    /// side a tie must favour (the leader: a push numbered like its tip builds on that
    /// pusher's own earlier change, which set the tip's number, so it is the newer change).
    pub fn favouring(ours: VersionNumber, theirs: VersionNumber, tie: Side) -> Order {
        let winner = match ours.cmp(&theirs) {
            std::cmp::Ordering::Less => Side::Theirs,
            std::cmp::Ordering::Greater => Side::Ours,
            std::cmp::Ordering::Equal => tie,
        };
        Order {
            winner,
            ours,
            theirs,
        }
    }

    pub fn loser(&self) -> Side {
        self.winner.other()
    }

    pub fn number(&self, side: Side) -> VersionNumber {
        match side {
            Side::Ours => self.ours,
            Side::Theirs => self.theirs,
        }
    }

    /// The higher number (the winner's).
    pub fn high(&self) -> VersionNumber {
        self.number(self.winner)
    }

    /// The lower number (the loser's).
    pub fn low(&self) -> VersionNumber {
        self.number(self.loser())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_higher_number_wins_whatever_the_argument_order() {
        let (a, b) = (VersionNumber::new(7, 1), VersionNumber::new(7, 2));
        assert_eq!(Order::new(a, b, b"x", b"y").winner, Side::Theirs);
        assert_eq!(Order::new(b, a, b"y", b"x").winner, Side::Ours);
        assert_eq!(
            Order::new(VersionNumber::new(8, 0), b, b"", b"").winner,
            Side::Ours
        );
        // Equal numbers: the content decides, symmetrically.
        assert_eq!(Order::new(a, a, b"x", b"y").winner, Side::Theirs);
        assert_eq!(Order::new(a, a, b"y", b"x").winner, Side::Ours);
        // A caller's tie rule decides equal numbers only.
        assert_eq!(Order::favouring(a, a, Side::Theirs).winner, Side::Theirs);
        assert_eq!(Order::favouring(a, a, Side::Ours).winner, Side::Ours);
        assert_eq!(Order::favouring(b, a, Side::Theirs).winner, Side::Ours);
    }
}
