// phototag web page: a little plain JavaScript, the pages work without it.
// - forms with data-confirm ask first; forms with data-busy disable their buttons and say what is happening
//   while the server writes the photos' metadata (the answer says how many were written).
document.addEventListener("submit", function (event) {
  var form = event.target;
  var question = form.getAttribute("data-confirm");
  if (question && !window.confirm(question)) { event.preventDefault(); return; }
  var busy = form.getAttribute("data-busy");
  if (busy) {
    var submitter = event.submitter;
    if (submitter && submitter.name) {  // keep the pressed button's value once the buttons are disabled
      var keep = document.createElement("input");
      keep.type = "hidden"; keep.name = submitter.name; keep.value = submitter.value;
      form.appendChild(keep);
    }
    form.querySelectorAll("button").forEach(function (b) { b.disabled = true; });
    var note = document.createElement("span");
    note.className = "muted small"; note.setAttribute("role", "status"); note.textContent = " " + busy;
    form.appendChild(note);
  }
});
// People: Enter in a name field submits (native); Escape clears it; "n" focuses the first unnamed cluster.
document.addEventListener("keydown", function (event) {
  var t = event.target;
  if (event.key === "Escape" && t.name === "name") { t.value = ""; return; }
  if (event.key === "n" && !/^(INPUT|SELECT|TEXTAREA)$/.test(t.tagName)) {
    var first = document.querySelector(".cluster input[name=name]");
    if (first) { first.focus(); event.preventDefault(); }
  }
});
