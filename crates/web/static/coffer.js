// The console works without this file; it only adds conveniences.
document.addEventListener('click', (event) => {
  const copy = event.target.closest('button[data-copy]');
  if (copy) {
    // Copy buttons put the text of the element they name on the clipboard.
    const text = document.getElementById(copy.dataset.copy).textContent.trim();
    navigator.clipboard.writeText(text).then(() => { copy.textContent = 'Copied'; }, () => { copy.textContent = 'Select and copy'; });
    return;
  }
  const link = event.target.closest('#load-remote');
  if (link) {
    // Remote images in a message body load only when the reader asks.
    event.preventDefault();
    document.getElementById(link.dataset.frame).src = link.dataset.src;
    link.remove();
  }
});

// A list that changes by itself (an import's progress) is fetched again every two seconds while
// it says it is busy (data-refresh), without touching the rest of the page or a form being filled.
function refreshWhileBusy() {
  const busy = document.querySelector('[data-refresh][id]');
  if (!busy) return;
  setTimeout(async () => {
    const response = await fetch(location.pathname, { credentials: 'same-origin' });
    if (!response.ok) return;
    const page = new DOMParser().parseFromString(await response.text(), 'text/html');
    const fresh = page.getElementById(busy.id);
    if (fresh) {
      busy.replaceWith(fresh);
      refreshWhileBusy();
    }
  }, 2000);
}
refreshWhileBusy();
