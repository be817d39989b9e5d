// Sign-in: phone and password, then the code sent by SMS.

import * as api from './api.js';
import { h, field, notice, busy, announce } from './dom.js';

export function signInView(main, heading, onSignedIn) {
  const status = h('div');
  const phone = field('Phone number', { id: 'signin-phone', name: 'phone', type: 'tel', autocomplete: 'tel', required: true }, 'The number your codes are sent to, such as +44 7700 900123.');
  const password = field('Password', { id: 'signin-password', name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const submit = h('button', { type: 'submit', id: 'signin-submit' }, 'Send me a code');
  const form = h('form', { class: 'stack', id: 'signin-form', 'aria-labelledby': 'signin-heading' }, phone, password, submit);
  main.replaceChildren(h('h1', { id: 'signin-heading' }, heading), status, form);
  form.querySelector('input').focus();
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      status.replaceChildren();
      try {
        const challenge = await api.signIn(form.phone.value.trim(), form.password.value);
        codeStep(main, status, challenge, onSignedIn);
      } catch (e) {
        status.replaceChildren(notice('error', e.message));
      }
    });
  });
}

function codeStep(main, status, challenge, onSignedIn) {
  const code = field('Code from your SMS', {
    id: 'signin-code', name: 'code', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: 6, required: true,
  }, 'Six digits. It expires in a few minutes.');
  const submit = h('button', { type: 'submit', id: 'signin-verify' }, 'Sign in');
  const form = h('form', { class: 'stack', id: 'signin-code-form' }, code, submit);
  status.replaceChildren(notice('ok', 'We have sent you a code by SMS.'));
  main.querySelector('#signin-form').replaceWith(form);
  form.code.focus();
  announce('Code sent. Enter the code from your SMS.');
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    busy(submit, async () => {
      try {
        const user = await api.verify(challenge, form.code.value.trim());
        onSignedIn(user);
      } catch (e) {
        status.replaceChildren(notice('error', e.message));
        form.code.select();
      }
    });
  });
}
