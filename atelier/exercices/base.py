"""Le moteur des exercices : ``verifier()``, ``indice()`` et ``solution()`` (voir la documentation du paquet)."""

from __future__ import annotations

import inspect
import sys
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from .solution_source import SolutionNotFound, solution_text

OK, WRONG, TODO = "ok", "faux", "à faire"
SYMBOLS = {OK: "✅", WRONG: "❌", TODO: "🟡"}
TODO_PREFIX = "pas encore fait"
GAP_PREFIX = "À compléter"

#: French names of the exceptions a learner's code typically raises.
EXCEPTION_NAMES = {
    "AttributeError": "attribut inexistant",
    "FileNotFoundError": "fichier introuvable",
    "ImportError": "import impossible",
    "IndexError": "indice hors limites",
    "InvalidArgumentError": "argument refusé par TensorFlow",
    "KeyError": "clé absente",
    "ModuleNotFoundError": "module introuvable",
    "NameError": "nom inconnu",
    "NotImplementedError": "pas encore écrit",
    "RecursionError": "récursion sans fin",
    "RuntimeError": "erreur d'exécution",
    "SyntaxError": "erreur de syntaxe",
    "TypeError": "type incompatible",
    "ValueError": "valeur refusée",
    "ZeroDivisionError": "division par zéro",
}


class Wrong(Exception):
    """Une réponse fausse : le message (en français) dit quoi corriger."""


class NotDone(Exception):
    """La lacune n'est pas encore remplie."""


def expect(condition: Any, message: str) -> None:
    """Un contrôle : si ``condition`` est fausse, la réponse est fausse et ``message`` dit pourquoi."""
    if not condition:
        raise Wrong(message)


def describe_exception(error: BaseException, limit: int = 160) -> str:
    """« ValueError (valeur refusée) : … » — le nom de l'exception, sa traduction et son message, abrégé."""
    name = type(error).__name__
    french = EXCEPTION_NAMES.get(name)
    detail = " ".join(str(error).split())
    if len(detail) > limit:
        detail = detail[: limit - 1] + "…"
    label = f"{name} ({french})" if french else name
    return f"{label} : {detail}" if detail else label


def raised_in(error: BaseException, fragment: str) -> bool:
    """Vrai si l'exception a traversé un fichier dont le chemin contient ``fragment`` (``random_rotation``…)."""
    return any(fragment in frame.filename for frame in traceback.extract_tb(error.__traceback__))


def is_gap(error: BaseException) -> bool:
    """Vrai pour le ``NotImplementedError("À compléter : …")`` des notebooks des apprenants."""
    return isinstance(error, NotImplementedError) and str(error).startswith(GAP_PREFIX)


def attempt(
    function: Any,
    *args: Any,
    what: str | None = None,
    known_errors: Iterable[tuple[type[BaseException], str, str]] = (),
    explain: Callable[[BaseException], str | None] | None = None,
    **kwargs: Any,
) -> Any:
    """Appelle le code de l'apprenant ; toute exception devient un message en français (jamais de trace).

    ``known_errors`` : des triplets ``(type d'exception, extrait du message, explication)`` pour les
    erreurs typiques, expliquées précisément (l'extrait vide reconnaît toutes les exceptions du type) ;
    ``explain(exception)`` peut aussi renvoyer une explication (ou ``None``), par exemple d'après la trace.
    """
    what = what or f"{getattr(function, '__name__', 'votre fonction')}(…)"
    if not callable(function):
        raise Wrong(f"{what} : « {getattr(function, '__name__', function)!r} » n'est pas une fonction.")
    try:
        return function(*args, **kwargs)
    except (Wrong, NotDone):
        raise
    except Exception as error:
        if is_gap(error):
            raise NotDone(f"{what} lève encore « {error} ».") from None
        explanation = explain(error) if explain else None
        if explanation:
            raise Wrong(explanation) from None
        for kind, fragment, explanation in known_errors:
            if isinstance(error, kind) and fragment.lower() in str(error).lower():
                raise Wrong(explanation) from None
        raise Wrong(f"{what} a levé une erreur {describe_exception(error)}") from None


@dataclass(frozen=True)
class Result:
    """Le verdict d'une vérification : ``status`` (OK, WRONG ou TODO) et son message."""

    status: str
    message: str

    @property
    def line(self) -> str:
        """La ligne affichée à l'apprenant, par exemple « ✅ Exercice 1 : … »."""
        return f"{SYMBOLS[self.status]} {self.message}"


_MISSING = object()


class Exercise:
    """Un exercice : sa vérification, ses indices gradués et sa solution lue dans ``solutions/``.

    Créé par le décorateur :func:`exercise` ; les paramètres de la fonction de vérification sont les
    noms des variables du notebook à contrôler.
    """

    def __init__(
        self,
        check: Callable[..., Any],
        *,
        notebook: str,
        cells: str | tuple[str, ...],
        hints: Iterable[str],
        success: str,
        title: str | None = None,
    ) -> None:
        self.check = check
        self.name = check.__name__
        self.number = int("".join(ch for ch in self.name if ch.isdigit()) or 0)
        self.title = title or f"Exercice {self.number}"
        self.notebook = notebook
        self.cells = (cells,) if isinstance(cells, str) else tuple(cells)
        self.hints = tuple(hints)
        self.success = success
        self.names = tuple(inspect.signature(check).parameters)
        self._hints_shown = 0
        self.__doc__ = check.__doc__

    def __repr__(self) -> str:
        return f"<{self.title} ({self.notebook}) : .verifier(), .indice(), .solution()>"

    # ------------------------------------------------------------------ checking

    def evaluate(self, namespace: dict[str, Any] | None = None, /, *args: Any, **answers: Any) -> Result:
        """Le verdict, sans rien afficher. Les réponses viennent de ``args``/``answers`` puis de ``namespace``."""
        namespace = namespace or {}
        values = dict(zip(self.names, args, strict=False))
        values.update(answers)
        for name in self.names:
            if name in values:
                continue
            value = namespace.get(name, _MISSING)
            if value is _MISSING:
                return self._result(
                    TODO, f"{TODO_PREFIX} : « {name} » n'existe pas encore ; complétez puis exécutez la cellule."
                )
            values[name] = value
        for name in self.names:
            value = values[name]
            if value is Ellipsis or value is None:
                return self._result(TODO, f"{TODO_PREFIX} : « {name} » vaut encore {value!r}.")
        try:
            verdict = self.check(**values)
        except NotDone as todo:
            return self._result(TODO, f"{TODO_PREFIX} : {todo}")
        except Wrong as wrong:
            return self._result(WRONG, str(wrong))
        except Exception as error:  # an answer of an unexpected kind: never a traceback for the learner
            if is_gap(error):
                return self._result(TODO, f"{TODO_PREFIX} : votre code lève encore « {error} ».")
            return self._result(
                WRONG,
                f"votre réponse n'a pas la forme attendue (la vérification bute sur {describe_exception(error)}).",
            )
        return self._result(OK, verdict if isinstance(verdict, str) else self.success)

    def _result(self, status: str, message: str) -> Result:
        return Result(status, " ".join(f"{self.title} : {message}".split()))  # always exactly one line

    def verifier(self, *args: Any, **answers: Any) -> None:
        """Vérifie votre réponse et affiche une ligne : ✅ juste, ❌ faux (avec l'explication), 🟡 pas encore fait.

        Sans argument, les variables sont lues dans le notebook ; on peut aussi les passer :
        ``ex1.verifier(normalize)``.
        """
        caller = sys._getframe(1).f_globals
        print(self.evaluate(_user_namespace(caller), *args, **answers).line)

    # ------------------------------------------------------------------ hints and solution

    def hint_text(self, number: int) -> str:
        """Le texte de l'indice n° ``number`` (à partir de 1)."""
        if not self.hints:
            return f"💡 {self.title} : pas d'indice pour cet exercice, relisez l'énoncé."
        if not 1 <= number <= len(self.hints):
            return f"💡 {self.title} : les indices vont de 1 à {len(self.hints)}."
        last = " (c'est le dernier ; ensuite : .solution())" if number == len(self.hints) else ""
        return f"💡 {self.title}, indice {number} sur {len(self.hints)}{last} : {self.hints[number - 1]}"

    def indice(self, numero: int | None = None) -> None:
        """Affiche un indice : le suivant à chaque appel (1, 2, …), ou celui demandé : ``indice(2)``."""
        if numero is None:
            self._hints_shown = min(self._hints_shown + 1, max(len(self.hints), 1))
            numero = self._hints_shown
        print(self.hint_text(numero))

    def solution_code(self) -> str:
        """Le code (ou le texte) de la solution, lu dans le notebook de ``solutions/``."""
        return "\n\n".join(solution_text(self.notebook, cell) for cell in self.cells)

    def solution(self) -> None:
        """Affiche la solution, lue dans le notebook corrigé de ``solutions/``."""
        try:
            text = self.solution_code()
        except SolutionNotFound as error:
            print(f"❌ {self.title} : {error}")
            return
        print(f"🔑 {self.title}, solution (solutions/{self.notebook}) :\n\n{text}")


def _user_namespace(caller_globals: dict[str, Any]) -> dict[str, Any]:
    """Les variables du notebook : celles de l'appelant, complétées par celles d'IPython s'il tourne."""
    namespace = dict(caller_globals)
    shell = sys.modules.get("IPython")
    get_ipython = getattr(shell, "get_ipython", None)
    ipython = get_ipython() if get_ipython else None
    if ipython is not None:
        namespace = {**ipython.user_ns, **namespace}
    return namespace


def exercise(
    *,
    notebook: str,
    cells: str | tuple[str, ...],
    hints: Iterable[str],
    success: str,
    title: str | None = None,
) -> Callable[[Callable[..., Any]], Exercise]:
    """Décorateur : transforme une fonction de contrôles en exercice (voir la documentation du paquet)."""

    def wrap(check: Callable[..., Any]) -> Exercise:
        return Exercise(check, notebook=notebook, cells=cells, hints=hints, success=success, title=title)

    return wrap


def exercises_in(module: Any) -> list[Exercise]:
    """Les exercices définis dans un module de chapitre, dans l'ordre de leurs numéros."""
    found = [value for value in vars(module).values() if isinstance(value, Exercise)]
    return sorted(found, key=lambda item: item.number)
