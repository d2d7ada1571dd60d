"""BALROG's NetHack progression metric, as an episode statistic.

Paglieri et al. 2024, "BALROG: Benchmarking Agentic LLM and VLM Reasoning On Games"; reference
balrog-ai/BALROG ``balrog/environments/nle/progress.py`` and its ``achievements.json`` (MIT licence; the two
tables below are that file's ``Dlvl:1..50`` and ``Xp:1..30`` entries, commit af7d1f17). Each entry is the
fraction of human games (NAO data) that reached the milestone and went on to ascend; an episode's progression
is the largest entry over every dungeon depth (``blstats`` depth) and experience level reached during the
episode, a number in [0, 1] (BALROG's leaderboard prints it as a percentage). Reaching Dlvl 2 scores 0.0154.

Deviations: none in the arithmetic. BALROG's table also has "Astral Plane", "Home 1..5" and an ascension
entry that its ``update`` never looks up (it builds only ``Dlvl:N`` and ``Xp:N`` keys); they are left out.
Depths beyond 50 and levels beyond 30 are not in the table and score as in BALROG (not looked up).
"""

from __future__ import annotations

from nle import nethack

DLVL_PROGRESSION: tuple[float, ...] = (
    0.0,
    0.015392269075361172,
    0.017539535798967013,
    0.021221378364235505,
    0.026482449457437766,
    0.035428686118173014,
    0.04846098359243788,
    0.0695812141543123,
    0.09770935198701912,
    0.12558597019922987,
    0.1612677822768481,
    0.20612854836308672,
    0.2566039887664476,
    0.29247245425293333,
    0.30881240110986263,
    0.3249071349317381,
    0.34007883702829594,
    0.3526455577544006,
    0.3654881095022441,
    0.37895667923256743,
    0.39293747679675045,
    0.40832255575976223,
    0.4258360748858015,
    0.445181408701678,
    0.46637631565303056,
    0.5067605633802816,
    0.5543572044866264,
    0.6015648510382184,
    0.6465049415992812,
    0.6913110342176086,
    0.7101094299371864,
    0.7176456494828894,
    0.7232124894378948,
    0.7284405900470092,
    0.7327761924174481,
    0.7368528917489855,
    0.7421458943978863,
    0.7471321695760599,
    0.753731343283582,
    0.7610398408061306,
    0.76740810314648,
    0.7725338491295938,
    0.7771626297577855,
    0.7812567949554251,
    0.7858986134802957,
    0.7890256738822022,
    0.7929718875502008,
    0.7967408445768355,
    0.8018467495718222,
    0.8067964442444019,
)
XP_PROGRESSION: tuple[float, ...] = (
    0.0,
    0.01847840456172601,
    0.02081163581974355,
    0.024160136550546978,
    0.029108986017138745,
    0.036887590648350246,
    0.0507583712345433,
    0.07453595273884014,
    0.11704996473565571,
    0.17909953770432294,
    0.25480449090205187,
    0.33264942385807844,
    0.41442590519821954,
    0.49403949403949404,
    0.5778823703813513,
    0.6261221999477034,
    0.656281764586298,
    0.6810218550418937,
    0.7015328516442704,
    0.7174494081710576,
    0.7286977843944303,
    0.7371004909327723,
    0.7443446629532795,
    0.7513449678519879,
    0.7585537128343045,
    0.7642151855635002,
    0.7703376822716808,
    0.7759810263044415,
    0.7783345263660224,
    0.7804561949196475,
)

_DEPTH, _XP = nethack.NLE_BL_DEPTH, nethack.NLE_BL_XP


def milestone_progression(depth: int, experience_level: int) -> float:
    """The progression of reaching ``depth`` and ``experience_level`` (0 outside the tables)."""
    d = DLVL_PROGRESSION[depth - 1] if 1 <= depth <= len(DLVL_PROGRESSION) else 0.0
    x = XP_PROGRESSION[experience_level - 1] if 1 <= experience_level <= len(XP_PROGRESSION) else 0.0
    return max(d, x)


class ProgressTracker:
    """The running maximum of :func:`milestone_progression` over an episode's steps."""

    __slots__ = ("depth", "progression", "xp")

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.depth = 0
        self.xp = 0
        self.progression = 0.0

    def update(self, blstats: list[int]) -> None:
        """Reads one step's ``blstats`` (as a list of ints; call only while the game is in progress)."""
        depth, xp = blstats[_DEPTH], blstats[_XP]
        if depth > self.depth or xp > self.xp:
            self.depth = max(self.depth, depth)
            self.xp = max(self.xp, xp)
            self.progression = max(self.progression, milestone_progression(depth, xp))
