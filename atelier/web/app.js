// Atelier CNN — the chapter-5 web page. Plain JavaScript, no build step, no external resource.
//
// It talks only to the workshop's API, on the same server:
//   GET /health       → {"status": "ok", "model_version": …}
//   POST /predict     → multipart field "file" → {"label", "probabilities", "model_version", "prediction_id",
//                        "image_stored", …}; the feedback buttons are offered only when "image_stored" is true
//   POST /explain     → multipart field "file" → {"label", "model_version", "heatmap": {"overlay_png": <base64>, …}, …}
//   POST /predictions/{id}/feedback → JSON {"label"} → the history row with its feedback (409 if the image is not kept)
//   GET /predictions  → {"total", "limit", "offset", "items": [{id, created, label, probabilities, model_version, filename,
//                        feedback_label, …}]}; ?feedback=wrong|right|none filters on the feedback
// Every error is JSON {"detail": "<French message>"}; it is shown as it is.
//
// Server data is always inserted as text (textContent, never innerHTML): a file name such as
// "<img src=x onerror=alert(1)>.jpg" is displayed, not executed.
"use strict";

(() => {
  const CLASSES = {
    "forêt": { name: "Forêt", icon: "🌲", css: "c-foret" },
    "mer": { name: "Mer", icon: "🌊", css: "c-mer" },
    "désert": { name: "Désert", icon: "🏜️", css: "c-desert" },
    "nuageux": { name: "Nuageux", icon: "☁️", css: "c-nuageux" },
  };
  const HISTORY_LIMIT = 20;
  const KEY_STORAGE = "atelier-cnn.cle-api"; // sessionStorage only: forgotten when the tab closes
  const KEY_HEADER = "X-API-Key";

  const percentFormat = new Intl.NumberFormat("fr-FR", { style: "percent", minimumFractionDigits: 1, maximumFractionDigits: 1 });
  const dateFormat = new Intl.DateTimeFormat("fr-FR", { dateStyle: "short", timeStyle: "medium" });
  const sizeFormat = new Intl.NumberFormat("fr-FR", { maximumFractionDigits: 1 });

  const $ = (id) => document.getElementById(id);
  const el = {
    status: $("version-modele"),
    dot: $("pastille"),
    keyForm: $("form-cle"),
    keyInput: $("cle-api"),
    keyMessage: $("cle-message"),
    fileInput: $("fichier"),
    dropZone: $("zone-depot"),
    preview: $("apercu"),
    previewImage: $("apercu-image"),
    previewCaption: $("apercu-legende"),
    error: $("erreur"),
    result: $("resultat"),
    resultEmpty: $("resultat-vide"),
    waiting: $("attente"),
    prediction: $("prediction"),
    labelIcon: $("classe-icone"),
    labelName: $("classe-nom"),
    confidence: $("confiance"),
    bars: $("barres"),
    predictionInfo: $("prediction-info"),
    refresh: $("rafraichir"),
    historyState: $("historique-etat"),
    historyTable: $("historique"),
    historyRows: $("historique-lignes"),
    historyFilter: $("filtre-retour"),
    followUp: $("suite"),
    heatmapToggle: $("bascule-carte"),
    heatmapState: $("carte-etat"),
    heatmap: $("carte"),
    heatmapImage: $("carte-image"),
    heatmapCaption: $("carte-legende"),
    feedbackRight: $("retour-juste"),
    feedbackWrong: $("retour-faux"),
    feedbackClass: $("retour-classe"),
    feedbackState: $("retour-etat"),
    feedback: $("retour"),
    feedbackUnavailable: $("retour-impossible"),
  };

  // ------------------------------------------------------------------ helpers
  function classInfo(label) {
    return CLASSES[label] || { name: label, icon: "🛰️", css: "c-autre" };
  }

  function formatPercent(value) {
    return Number.isFinite(value) ? percentFormat.format(value) : "—";
  }

  function formatDate(iso) {
    const date = new Date(iso);
    return Number.isNaN(date.getTime()) ? String(iso ?? "—") : dateFormat.format(date);
  }

  function formatSize(bytes) {
    if (bytes < 1024) return `${bytes} octets`;
    if (bytes < 1024 * 1024) return `${sizeFormat.format(bytes / 1024)} Ko`;
    return `${sizeFormat.format(bytes / (1024 * 1024))} Mo`;
  }

  function make(tag, { text, className, attrs } = {}) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined) node.textContent = text;
    for (const [name, value] of Object.entries(attrs || {})) node.setAttribute(name, value);
    return node;
  }

  function storedKey() {
    try { return sessionStorage.getItem(KEY_STORAGE) || ""; } catch { return ""; }
  }

  function storeKey(value) {
    try {
      if (value) sessionStorage.setItem(KEY_STORAGE, value);
      else sessionStorage.removeItem(KEY_STORAGE);
    } catch { /* storage disabled: the key lives as long as the page */ }
    memoryKey = value;
  }

  let memoryKey = storedKey();

  class ApiError extends Error {
    constructor(status, detail) {
      super(detail);
      this.status = status;
    }
  }

  // One call to the API: adds the key when there is one, turns every failure into a French ApiError.
  async function api(path, options = {}) {
    const headers = new Headers(options.headers || {});
    headers.set("Accept", "application/json");
    if (memoryKey) headers.set(KEY_HEADER, memoryKey);
    let response;
    try {
      response = await fetch(path, { ...options, headers, cache: "no-store", credentials: "same-origin" });
    } catch {
      throw new ApiError(0, "Impossible de joindre le serveur de l'atelier. Vérifiez qu'il est toujours démarré, puis réessayez.");
    }
    let body = null;
    try { body = await response.json(); } catch { body = null; }
    if (!response.ok) {
      const detail = body && typeof body.detail === "string" && body.detail
        ? body.detail
        : `Le serveur a répondu par une erreur ${response.status}.`;
      throw new ApiError(response.status, detail);
    }
    if (body === null || typeof body !== "object") {
      throw new ApiError(response.status, "Réponse illisible : le serveur n'a pas renvoyé de JSON.");
    }
    return body;
  }

  // ------------------------------------------------------------------ API key
  function askForKey(detail, { focus = true } = {}) {
    el.keyForm.hidden = false;
    el.keyMessage.textContent = memoryKey
      ? `${detail} Vérifiez la clé et entrez-la de nouveau.`
      : `${detail} Ce serveur est protégé\u00a0: entrez la clé d'API donnée par la personne qui l'a démarré.`;
    if (focus) el.keyInput.focus();
  }

  el.keyForm.addEventListener("submit", (event) => {
    event.preventDefault();
    const value = el.keyInput.value.trim();
    if (!value) {
      el.keyMessage.textContent = "Entrez une clé d'API avant de valider.";
      el.keyInput.focus();
      return;
    }
    storeKey(value);
    el.keyInput.value = "";
    el.keyMessage.textContent = "Clé enregistrée pour cet onglet. Vérification…";
    hideError();
    loadHistory().then((ok) => {
      if (!ok) return;
      el.keyForm.hidden = true;
      if (pendingFile) send(pendingFile); // the image refused for lack of a key is sent again
      else el.dropZone.focus();
    });
  });

  // ------------------------------------------------------------------ health
  async function loadHealth() {
    try {
      const health = await api("health");
      showModelVersion(health.model_version);
    } catch (error) {
      el.dot.className = "pastille ko";
      el.status.textContent = error.status === 0 ? "Serveur injoignable" : `Serveur en erreur\u00a0: ${error.message}`;
    }
  }

  function showModelVersion(version) {
    el.dot.className = "pastille ok";
    el.status.replaceChildren(
      document.createTextNode("Serveur en service · modèle "),
      make("span", { className: "insecable", text: String(version) }),
    );
  }

  // ------------------------------------------------------------------ errors
  function showError(message, title = "L'image n'a pas pu être analysée.") {
    el.error.replaceChildren(
      make("span", { text: "⚠️", attrs: { "aria-hidden": "true" } }),
      (() => {
        const box = make("div");
        box.append(make("strong", { text: title }), make("span", { text: message, attrs: { id: "erreur-detail" } }));
        return box;
      })(),
    );
    el.error.hidden = false;
  }

  function hideError() {
    el.error.hidden = true;
    el.error.replaceChildren();
  }

  // ------------------------------------------------------------------ choosing a file
  let pendingFile = null;   // the last file chosen, kept to send it again after entering a key
  let previewUrl = null;
  let sequence = 0;         // only the answer to the latest file is displayed

  function openChooser() {
    el.fileInput.value = ""; // choosing the same file twice sends it twice
    el.fileInput.click();
  }

  el.dropZone.addEventListener("click", openChooser);
  el.dropZone.addEventListener("keydown", (event) => {
    if (event.key === "Enter" || event.key === " " || event.key === "Spacebar") {
      event.preventDefault();
      openChooser();
    }
  });
  el.fileInput.addEventListener("change", () => {
    const file = el.fileInput.files && el.fileInput.files[0];
    if (file) choose(file);
  });

  for (const type of ["dragenter", "dragover"]) {
    el.dropZone.addEventListener(type, (event) => {
      event.preventDefault();
      if (event.dataTransfer) event.dataTransfer.dropEffect = "copy";
      el.dropZone.classList.add("survol");
    });
  }
  el.dropZone.addEventListener("dragleave", (event) => {
    if (!el.dropZone.contains(event.relatedTarget)) el.dropZone.classList.remove("survol");
  });
  el.dropZone.addEventListener("drop", (event) => {
    event.preventDefault();
    el.dropZone.classList.remove("survol");
    const file = event.dataTransfer && event.dataTransfer.files && event.dataTransfer.files[0];
    if (file) choose(file);
  });
  // A file dropped next to the zone must not replace the page by the image.
  for (const type of ["dragover", "drop"]) {
    window.addEventListener(type, (event) => {
      if (!el.dropZone.contains(event.target)) event.preventDefault();
    });
  }

  function choose(file) {
    pendingFile = file;
    showPreview(file);
    send(file);
  }

  function showPreview(file) {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = null;
    const caption = [make("strong", { text: file.name || "image sans nom" }), make("span", { text: formatSize(file.size) })];
    if (file.type.startsWith("image/")) {
      previewUrl = URL.createObjectURL(file);
      el.previewImage.classList.remove("pixels");
      el.previewImage.onload = () => {
        // Small satellite tiles (64 × 64) are enlarged without blur: the learner sees the pixels the CNN sees.
        el.previewImage.classList.toggle("pixels", el.previewImage.naturalWidth <= 128);
        caption[1].textContent = `${el.previewImage.naturalWidth} × ${el.previewImage.naturalHeight} pixels · ${formatSize(file.size)}`;
      };
      el.previewImage.onerror = () => { el.previewImage.hidden = true; };
      el.previewImage.hidden = false;
      el.previewImage.src = previewUrl;
      el.previewImage.alt = `Aperçu de l'image choisie : ${file.name}`;
    } else {
      el.previewImage.hidden = true;
      el.previewImage.removeAttribute("src");
      el.previewImage.alt = "";
    }
    el.previewCaption.replaceChildren(...caption);
    el.preview.hidden = false;
  }

  // ------------------------------------------------------------------ prediction
  async function send(file) {
    const mine = ++sequence;
    hideError();
    el.result.setAttribute("aria-busy", "true");
    el.resultEmpty.hidden = true;
    el.prediction.hidden = true;
    el.followUp.hidden = true;
    current = null;
    el.waiting.hidden = false;
    const form = new FormData();
    form.append("file", file, file.name || "image");
    try {
      const result = await api("predict", { method: "POST", body: form });
      if (mine !== sequence) return;
      pendingFile = null;
      showPrediction(result, file);
      prepareFollowUp(result, file);
      if (result.model_version) showModelVersion(result.model_version);
      loadHistory(result.prediction_id);
    } catch (error) {
      if (mine !== sequence) return;
      el.resultEmpty.hidden = false;
      el.resultEmpty.textContent = "Aucun résultat pour cette image.";
      if (error.status === 401) {
        showError(error.message, "Le serveur demande une clé d'API.");
        askForKey(error.message);
      } else {
        pendingFile = null;
        showError(error.message);
      }
    } finally {
      if (mine === sequence) {
        el.waiting.hidden = true;
        el.result.setAttribute("aria-busy", "false");
      }
    }
  }

  function showPrediction(result, file) {
    const info = classInfo(result.label);
    const probabilities = Object.entries(result.probabilities || {})
      .filter(([, p]) => typeof p === "number")
      .sort((a, b) => b[1] - a[1]);
    const confidence = typeof result.confidence === "number" ? result.confidence : result.probabilities?.[result.label];

    el.labelIcon.textContent = info.icon;
    el.labelIcon.className = `classe-icone ${info.css}`;
    el.labelName.textContent = info.name;
    el.labelName.className = info.css;
    el.labelName.dataset.label = result.label;
    el.confidence.replaceChildren(
      document.createTextNode("Confiance du modèle\u00a0: "),
      make("strong", { text: formatPercent(confidence) }),
      document.createTextNode(
        result.uncertain && typeof result.message === "string"
          ? ` — ${result.message}` // the server's threshold decides (create_app(uncertainty_threshold=...))
          : confidence < 0.5 ? " — il hésite\u00a0: regardez les autres classes." : "",
      ),
    );

    const rows = probabilities.map(([label, p]) => {
      const classe = classInfo(label);
      const item = make("li", { className: `barre ${classe.css}${label === result.label ? " gagnante" : ""}` });
      item.dataset.label = label;
      const head = make("div", { className: "barre-entete" });
      head.append(
        make("span", { text: `${classe.icon} ${classe.name}` }),
        make("span", { className: "valeur", text: formatPercent(p) }),
      );
      const track = make("div", { className: "barre-fond", attrs: { "aria-hidden": "true" } });
      const fill = make("div", { className: "barre-plein" });
      track.append(fill);
      item.append(head, track);
      requestAnimationFrame(() => fill.style.setProperty("width", `${Math.max(0, Math.min(1, p)) * 100}%`));
      return item;
    });
    el.bars.replaceChildren(...rows);

    const details = [`Modèle ${result.model_version}`];
    if (result.prediction_id !== undefined) details.push(`prédiction n°\u00a0${result.prediction_id}`);
    if (typeof result.duration_ms === "number") details.push(`${sizeFormat.format(result.duration_ms)} ms côté serveur`);
    el.predictionInfo.textContent = `${details.join(" · ")} · fichier ${file.name || "sans nom"}`;
    el.prediction.hidden = false;
  }

  // ------------------------------------------------------------------ heatmap and feedback
  let current = null; // {result, file, explanation}: the answer shown, its image and its explanation once asked

  function prepareFollowUp(result, file) {
    current = { result, file, explanation: null };
    showHeatmap(false);
    el.heatmapState.textContent = "";
    el.heatmapImage.removeAttribute("src");
    const others = Object.keys(CLASSES).filter((label) => label !== result.label);
    el.feedbackClass.replaceChildren(
      ...others.map((label) => make("option", { text: classInfo(label).name, attrs: { value: label } })),
    );
    updateWrongButton();
    // A feedback needs the image kept by the server (serve --store-images): otherwise the API refuses it (409).
    const canGiveFeedback = result.image_stored === true && result.prediction_id !== undefined;
    el.feedback.hidden = !canGiveFeedback;
    el.feedbackUnavailable.hidden = canGiveFeedback;
    for (const button of [el.feedbackRight, el.feedbackWrong]) {
      button.disabled = !canGiveFeedback;
      button.setAttribute("aria-pressed", "false");
    }
    el.feedbackState.textContent = "";
    el.followUp.dataset.prediction = String(result.prediction_id ?? "");
    el.followUp.hidden = false;
  }

  function updateWrongButton() {
    const label = el.feedbackClass.value;
    el.feedbackWrong.textContent = label ? `C'est faux\u00a0: c'était ${classInfo(label).name}` : "C'est faux\u00a0: c'était …";
  }

  function showHeatmap(visible) {
    el.heatmap.hidden = !visible;
    el.heatmapToggle.setAttribute("aria-pressed", String(visible));
    el.heatmapToggle.textContent = visible ? "Cacher la carte de chaleur" : "Montrer où le modèle a regardé";
  }

  async function toggleHeatmap() {
    if (!current) return;
    if (el.heatmapToggle.getAttribute("aria-pressed") === "true") {
      showHeatmap(false);
      return;
    }
    const shown = current;
    if (!shown.explanation) {
      el.heatmapState.textContent = "Calcul de la carte de chaleur…";
      el.heatmapToggle.disabled = true;
      const form = new FormData();
      form.append("file", shown.file, shown.file.name || "image");
      try {
        shown.explanation = await api("explain", { method: "POST", body: form });
      } catch (error) {
        if (shown === current) {
          el.heatmapState.textContent = `Carte indisponible\u00a0: ${error.message}`;
          if (error.status === 401) askForKey(error.message);
        }
        return;
      } finally {
        el.heatmapToggle.disabled = false;
      }
      if (shown !== current) return; // another image was chosen meanwhile
    }
    const explanation = shown.explanation;
    el.heatmapImage.src = `data:image/png;base64,${explanation.heatmap.overlay_png}`;
    const sameModel = explanation.model_version === shown.result.model_version;
    el.heatmapCaption.textContent =
      `Grad-CAM pour la classe ${classInfo(explanation.label).name}, modèle ${explanation.model_version}` +
      (sameModel ? "" : ` (la prédiction venait du modèle ${shown.result.model_version}, remplacé depuis)`) +
      ". Rouge\u00a0: les zones qui ont le plus poussé vers cette réponse\u00a0; bleu\u00a0: aucune contribution.";
    el.heatmapState.textContent = "Carte de chaleur affichée sous le bouton.";
    showHeatmap(true);
  }

  async function sendFeedback(label, button) {
    if (!current) return;
    const shown = current;
    const id = shown.result.prediction_id;
    el.feedbackState.textContent = "Envoi du retour…";
    try {
      await api(`predictions/${encodeURIComponent(id)}/feedback`, {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ label }),
      });
    } catch (error) {
      if (shown !== current) return;
      el.feedbackState.textContent = `Retour non enregistré\u00a0: ${error.message}`;
      if (error.status === 401) askForKey(error.message);
      // 409: the server does not keep this image; sending again cannot work.
      if (error.status === 409) for (const other of [el.feedbackRight, el.feedbackWrong]) other.disabled = true;
      return;
    }
    if (shown !== current) return;
    for (const other of [el.feedbackRight, el.feedbackWrong]) other.setAttribute("aria-pressed", String(other === button));
    el.feedbackState.textContent = label === shown.result.label
      ? `Merci\u00a0! Retour enregistré pour la prédiction n°\u00a0${id}\u00a0: c'est juste.`
      : `Merci\u00a0! Correction enregistrée pour la prédiction n°\u00a0${id}\u00a0: c'était ${classInfo(label).name}.`;
    loadHistory(id);
  }

  el.heatmapToggle.addEventListener("click", toggleHeatmap);
  el.feedbackClass.addEventListener("change", updateWrongButton);
  el.feedbackRight.addEventListener("click", () => current && sendFeedback(current.result.label, el.feedbackRight));
  el.feedbackWrong.addEventListener("click", () => {
    if (el.feedbackClass.value) sendFeedback(el.feedbackClass.value, el.feedbackWrong);
  });

  // ------------------------------------------------------------------ history
  let historyRequest = 0;

  async function loadHistory(highlightId) {
    const mine = ++historyRequest;
    const filter = el.historyFilter.value;
    try {
      const query = filter ? `&feedback=${encodeURIComponent(filter)}` : "";
      const page = await api(`predictions?limit=${HISTORY_LIMIT}${query}`);
      if (mine === historyRequest) renderHistory(page, highlightId);
      return true;
    } catch (error) {
      if (mine !== historyRequest) return false;
      if (error.status === 401) {
        el.historyState.textContent = "L'historique demande une clé d'API.";
        askForKey(error.message);
      } else {
        el.historyState.textContent = `Historique indisponible\u00a0: ${error.message}`;
      }
      return false;
    }
  }

  function cell(text, title, className) {
    return make("td", { text, className, attrs: { "data-titre": title } });
  }

  function feedbackCell(item) {
    const td = cell("", "Retour", "retour-cellule");
    if (!item.feedback_label) {
      td.append(make("span", { className: "sans-retour", text: "—" }));
      td.dataset.feedback = "none";
    } else if (item.feedback_label === item.label) {
      td.append(make("span", { className: "retour-ok", text: "✔ juste" }));
      td.dataset.feedback = "right";
    } else {
      td.append(make("span", { className: "retour-ko", text: `✘ c'était ${classInfo(item.feedback_label).name}` }));
      td.dataset.feedback = "wrong";
    }
    if (item.feedback_comment) td.title = item.feedback_comment;
    return td;
  }

  const FILTER_WORDS = {
    wrong: ["jugée fausse", "jugées fausses"],
    right: ["jugée juste", "jugées justes"],
    none: ["sans retour", "sans retour"],
  };

  function renderHistory(page, highlightId) {
    const items = Array.isArray(page.items) ? page.items : [];
    const total = Number.isInteger(page.total) ? page.total : items.length;
    const rows = items.map((item) => {
      const row = make("tr");
      row.dataset.id = String(item.id);
      if (item.id === highlightId) row.className = "nouvelle";

      const when = cell("", "Heure");
      const time = make("time", { text: formatDate(item.created) });
      if (item.created) time.setAttribute("datetime", String(item.created));
      when.append(time);

      const classe = classInfo(item.label);
      const labelCell = cell("", "Classe");
      labelCell.append(make("span", { className: `etiquette ${classe.css}`, text: classe.name }));

      const probabilities = item.probabilities || {};
      const confidence = typeof item.confidence === "number" ? item.confidence : probabilities[item.label];
      row.append(
        when,
        cell(item.filename || "—", "Fichier", "fichier"),
        labelCell,
        cell(formatPercent(confidence), "Confiance", "nombre"),
        cell(String(item.model_version ?? "—"), "Modèle", "version"),
        feedbackCell(item),
      );
      return row;
    });
    el.historyRows.replaceChildren(...rows);
    el.historyTable.hidden = rows.length === 0;
    el.historyTable.dataset.total = String(total);
    const filter = el.historyFilter.value;
    el.historyTable.dataset.filter = filter;
    const [one, many] = filter ? FILTER_WORDS[filter] : ["enregistrée", "enregistrées"];
    if (total === 0 && filter) {
      el.historyState.textContent = `Aucune prédiction ${one} pour l'instant.`;
    } else if (total === 0) {
      el.historyState.textContent = "Aucune prédiction pour l'instant\u00a0: envoyez une image.";
    } else if (total > rows.length) {
      el.historyState.textContent = `${total} prédictions ${many}\u00a0; voici les ${rows.length} plus récentes.`;
    } else {
      el.historyState.textContent = total === 1 ? `1 prédiction ${one}.` : `${total} prédictions ${many}.`;
    }
  }

  el.refresh.addEventListener("click", () => loadHistory());
  el.historyFilter.addEventListener("change", () => loadHistory());

  // ------------------------------------------------------------------ start
  loadHealth();
  loadHistory();
})();
