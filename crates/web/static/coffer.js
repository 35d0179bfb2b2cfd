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
